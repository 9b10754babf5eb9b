//! Training curves (loss; Recall@K and MAP@R), the run's config, and the before/after table.

use eframe::egui::{self, RichText};
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

use crate::palette::class_color;
use crate::run_data::RunData;

pub fn ui(ui: &mut egui::Ui, run: &RunData) {
    let evaluations = run.evaluations();
    let done = run.last_iteration();
    ui.horizontal(|ui| {
        ui.heading(run.path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()));
        let total = run.config.run.iterations;
        let state = if done >= total { "finished".to_string() } else { format!("training: iteration {done} of {total}") };
        ui.label(state);
    });
    ui.separator();
    let height = ((ui.available_height() - 280.0) / 2.0).max(120.0);
    ui.label(RichText::new("Loss").strong());
    Plot::new("loss").height(height).legend(Legend::default()).x_axis_label("iteration").show(ui, |plot| {
        plot.line(Line::new("loss", PlotPoints::from(run.losses())));
        let memory = run.memory_losses();
        if !memory.is_empty() {
            plot.line(Line::new("memory term (xbm_loss)", PlotPoints::from(memory)));
        }
    });
    ui.label(RichText::new("Retrieval on the test classes").strong());
    Plot::new("retrieval").height(height).legend(Legend::default()).x_axis_label("iteration").include_y(0.0).include_y(1.0).show(
        ui,
        |plot| {
            let ks: Vec<usize> = evaluations.first().map(|e| e.recalls.iter().map(|(k, _)| *k).collect()).unwrap_or_default();
            for (c, k) in ks.iter().enumerate() {
                let series: Vec<[f64; 2]> = evaluations
                    .iter()
                    .filter_map(|e| e.recalls.iter().find(|(kk, _)| kk == k).map(|(_, v)| [e.iteration as f64, *v]))
                    .collect();
                plot.line(Line::new(format!("Recall@{k}"), PlotPoints::from(series.clone())).color(class_color(c as i64)));
                plot.points(Points::new(format!("Recall@{k}"), PlotPoints::from(series)).radius(3.0).color(class_color(c as i64)));
            }
            let map: Vec<[f64; 2]> = evaluations.iter().map(|e| [e.iteration as f64, e.map_at_r]).collect();
            plot.line(Line::new("MAP@R", PlotPoints::from(map.clone())).color(class_color(7)));
            plot.points(Points::new("MAP@R", PlotPoints::from(map)).radius(3.0).color(class_color(7)));
        },
    );
    ui.columns(2, |columns| {
        columns[0].label(RichText::new("Before and after").strong());
        if let (Some(first), Some(last)) = (evaluations.first(), evaluations.last()) {
            egui::Grid::new("before-after").striped(true).show(&mut columns[0], |ui| {
                ui.label("");
                ui.label(format!("iteration {}", first.iteration));
                ui.label(format!("iteration {}", last.iteration));
                ui.end_row();
                for ((k, before), (_, after)) in first.recalls.iter().zip(&last.recalls) {
                    ui.label(format!("Recall@{k}"));
                    ui.label(format!("{before:.4}"));
                    ui.label(format!("{after:.4}"));
                    ui.end_row();
                }
                for (name, before, after) in
                    [("MAP@R", first.map_at_r, last.map_at_r), ("R-Precision", first.r_precision, last.r_precision)]
                {
                    ui.label(name);
                    ui.label(format!("{before:.4}"));
                    ui.label(format!("{after:.4}"));
                    ui.end_row();
                }
            });
        } else {
            columns[0].label("no evaluation yet");
        }
        columns[1].label(RichText::new("Config").strong());
        egui::ScrollArea::vertical().id_salt("config").show(&mut columns[1], |ui| {
            ui.monospace(run.config.to_toml());
        });
    });
}
