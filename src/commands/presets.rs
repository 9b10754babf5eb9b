//! `dml presets`: the published experiments `dml train --preset NAME` reproduces, with their
//! sources, the Recall@K they report, the weights they start from and where dml departs from them.

use dml_engine::train::PRESETS;

use crate::error::CliError;

pub fn run() -> Result<(), CliError> {
    for preset in &PRESETS {
        let config = preset.config().map_err(CliError::plain)?;
        println!("{}", preset.name);
        println!("  reproduces:  {}", preset.reproduces);
        println!("  expected:    {}", preset.expected_text());
        println!(
            "  setting:     {} on {}, {}-d, loss {}, {} × {} a batch, {} iterations",
            config.model.backbone.name(),
            config.data.dataset.name(),
            config.model.dim,
            config.loss.name(),
            config.sampler.p,
            config.sampler.k,
            config.run.iterations
        );
        if let Some(weights) = preset.weights {
            println!("  needs:       --pretrained FILE: {weights}");
        }
        println!("  source:      {}", preset.source);
        println!("  differences: {}", preset.differences);
        println!();
    }
    println!("Run one with `dml train --preset NAME --root DATASET_DIR --pretrained FILE`; flags and --set override it,");
    println!("and --print-config shows the result.");
    Ok(())
}
