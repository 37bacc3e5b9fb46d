//! What a run reports: TensorBoard event files (scalars, sample grids) under
//! `OUTPUT/tensorboard`, and a progress bar with loss and ETA on a terminal, or a plain line
//! every `log_every` steps when stdout is not one.

use std::io::IsTerminal;
use std::path::Path;

use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use tensorboard_rs::summary_writer::SummaryWriter;

pub struct Logger {
    board: SummaryWriter,
    bar: Option<ProgressBar>,
    /// Lines go to stdout (off in tests).
    pub echo: bool,
}

impl Logger {
    /// A logger for steps `start..total`; a progress bar only when stdout is a terminal.
    pub fn new(output_dir: &Path, start: u64, total: u64, echo: bool) -> Self {
        let bar = (echo && std::io::stdout().is_terminal()).then(|| {
            let bar = ProgressBar::new(total).with_position(start);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}")
                    .expect("a valid template"),
            );
            bar
        });
        Self { board: SummaryWriter::new(output_dir.join("tensorboard")), bar, echo }
    }

    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) {
        for (tag, value) in values {
            self.board.add_scalar(tag, *value as f32, step as usize);
        }
    }

    pub fn image(&mut self, tag: &str, image: &RgbImage, step: u64) {
        // tensorboard-rs reads `dim` as [3, width, height] over interleaved RGB bytes.
        let (w, h) = image.dimensions();
        self.board.add_image(tag, image.as_raw(), &[3, w as usize, h as usize], step as usize);
    }

    /// A line above the bar (or on stdout).
    pub fn line(&self, text: &str) {
        match (&self.bar, self.echo) {
            (Some(bar), _) => bar.println(text),
            (None, true) => println!("{text}"),
            (None, false) => {}
        }
    }

    /// Advances the bar to `step` with `message`; without a bar, prints the message when
    /// `plain` is set (every `log_every` steps).
    pub fn progress(&self, step: u64, message: &str, plain: bool) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(step);
                bar.set_message(message.to_string());
            }
            None if plain && self.echo => println!("step {step}: {message}"),
            None => {}
        }
    }

    pub fn flush(&mut self) {
        self.board.flush();
    }

    pub fn finish(&mut self) {
        self.flush();
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
