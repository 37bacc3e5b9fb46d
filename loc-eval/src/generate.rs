//! Generation for the MagicBrush test split, written as the official evaluation reads it:
//! `OUT/<id>/<id>_1.png`, `<id>_inde_<k>.png` (turn k edited from the ground-truth input) and
//! `<id>_iter_<k>.png` (turn k edited from the model's own turn k - 1).
//!
//! Two modes: `text`, the editor with the turn's instruction (the InstructPix2Pix baseline),
//! and `pair`, LoC with a visual instruction `(A, A')` from a [`PairSource`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use burn::prelude::*;
use image::RgbImage;
use loc_core::checkpoint::LocModel;
use loc_core::lora::LoraSet;
use loc_core::pipeline::{EditOptions, InstructPix2Pix};
use loc_data::magicbrush::{MagicBrush, Session, Turn};
use loc_data::pipeline::{QueryLayout, instruction_tensors, load_image, read_image};
use serde::Deserialize;

use crate::editing::query_layout;

/// Where pair mode's visual instruction for a turn comes from.
pub enum PairSource {
    /// The turn's own input and ground-truth output: an upper bound (the answer is shown).
    Oracle,
    /// A JSONL file of `{"session", "turn", "before", "after"}` (paths relative to the file).
    Table(HashMap<(String, usize), (PathBuf, PathBuf)>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairRow {
    session: String,
    turn: usize,
    before: PathBuf,
    after: PathBuf,
}

impl PairSource {
    /// `oracle`, or the path of a JSONL table.
    pub fn parse(spec: &str) -> anyhow::Result<Self> {
        if spec == "oracle" {
            return Ok(Self::Oracle);
        }
        let path = Path::new(spec);
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the pair table {spec}"))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut table = HashMap::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let row: PairRow = serde_json::from_str(line).with_context(|| format!("{spec}:{}", i + 1))?;
            table.insert((row.session, row.turn), (base.join(row.before), base.join(row.after)));
        }
        Ok(Self::Table(table))
    }

    fn pair(&self, session: &str, turn: &Turn) -> anyhow::Result<(RgbImage, RgbImage)> {
        match self {
            Self::Oracle => Ok((load_image(&turn.input)?, load_image(&turn.output)?)),
            Self::Table(table) => {
                let (before, after) = table
                    .get(&(session.to_string(), turn.index))
                    .ok_or_else(|| anyhow!("the pair table has no row for session {session} turn {}", turn.index))?;
                Ok((read_image(before)?, read_image(after)?))
            }
        }
    }
}

/// What edits: the editor with text, or LoC with pairs.
pub enum Editor {
    Text(Box<InstructPix2Pix>),
    Pair(Box<LocModel>, PairSource),
}

/// Which turn settings to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Turns {
    Independent,
    Iterative,
    Both,
}

pub struct Generation {
    pub editor: Editor,
    pub resolution: u32,
    pub options: EditOptions,
    pub turns: Turns,
    pub device: Device,
}

impl Generation {
    /// Pair mode: the LoRA of the turn's visual instruction (one for all its edits); text
    /// mode: none.
    fn lora(&self, session: &str, turn: &Turn) -> anyhow::Result<Option<LoraSet>> {
        let Editor::Pair(model, source) = &self.editor else { return Ok(None) };
        let (before, after) = source.pair(session, turn)?;
        let [before, after] = instruction_tensors(before, after, self.resolution, &self.device);
        Ok(Some(model.generate(before, after)))
    }

    /// One edit of `input` for `turn`, at the input's size.
    fn edit(&self, turn: &Turn, lora: Option<&LoraSet>, input: &RgbImage) -> RgbImage {
        self.layout().edit(input, &self.device, |query| match (&self.editor, lora) {
            (Editor::Text(editor), _) => {
                editor.edit_with_prompts(query, &[turn.instruction.as_str()], None, &self.options)
            }
            (Editor::Pair(model, _), Some(lora)) => model.edit(query, lora, &self.options),
            (Editor::Pair(..), None) => unreachable!("pair mode edits with the turn's LoRA"),
        })
    }

    /// The input at its own aspect ratio, sides a multiple of the editor's VAE factor.
    fn layout(&self) -> QueryLayout {
        let editor = match &self.editor {
            Editor::Text(editor) => editor.as_ref(),
            Editor::Pair(model, _) => &model.editor,
        };
        query_layout(editor, self.resolution, false)
    }

    /// Writes every turn of `session` into `out/<id>/`.
    fn session(&self, session: &Session, out: &Path) -> anyhow::Result<usize> {
        let id = &session.img_id;
        let dir = out.join(id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let save = |image: &RgbImage, name: String| {
            let path = dir.join(name);
            image.save(&path).with_context(|| format!("writing {}", path.display()))
        };
        let mut written = 0;
        let mut previous: Option<RgbImage> = None;
        for turn in &session.turns {
            let context = || format!("session {id} turn {}", turn.index);
            let lora = self.lora(id, turn).with_context(context)?;
            let edit = |input: &RgbImage| self.edit(turn, lora.as_ref(), input);
            if turn.index == 1 {
                let first = edit(&load_image(&turn.input).with_context(context)?);
                save(&first, format!("{id}_1.png"))?;
                previous = Some(first);
                written += 1;
                continue;
            }
            if self.turns != Turns::Iterative {
                let edited = edit(&load_image(&turn.input).with_context(context)?);
                save(&edited, format!("{id}_inde_{}.png", turn.index))?;
                written += 1;
            }
            if self.turns != Turns::Independent {
                let input = previous.take().ok_or_else(|| anyhow!("session {id}: turns are not numbered from 1"))?;
                let edited = edit(&input);
                save(&edited, format!("{id}_iter_{}.png", turn.index))?;
                previous = Some(edited);
                written += 1;
            }
        }
        Ok(written)
    }

    /// Every session of `data` (the first `limit` when given); returns the images written.
    pub fn run(&self, data: &MagicBrush, out: &Path, limit: Option<usize>) -> anyhow::Result<usize> {
        let sessions = &data.sessions[..limit.unwrap_or(usize::MAX).min(data.sessions.len())];
        let mut written = 0;
        for (i, session) in sessions.iter().enumerate() {
            written += self.session(session, out)?;
            eprintln!("[{}/{}] session {}", i + 1, sessions.len(), session.img_id);
        }
        Ok(written)
    }
}
