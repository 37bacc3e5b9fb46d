//! The CLIP BPE tokenizer from a `tokenizer/` folder (`vocab.json`, `merges.txt`), built with
//! the `tokenizers` crate from the same components transformers uses: NFC, whitespace
//! collapsed, lower case; CLIP's word split; byte-level BPE with `</w>`; start/end tokens;
//! truncation and padding to the context length.
//!
//! Follows transformers `src/transformers/models/clip/tokenization_clip_fast.py`,
//! `CLIPTokenizerFast` (the `tokenizers` pipeline it builds).

use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{
    Model, PaddingDirection, PaddingParams, PaddingStrategy, SplitDelimiterBehavior, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use crate::error::ModelError;

const START: &str = "<|startoftext|>";
const END: &str = "<|endoftext|>";
const WORDS: &str = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// Text to fixed-length token ids.
#[derive(Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    pub max_length: usize,
}

fn build_error(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::Config { path: path.to_path_buf(), field: "tokenizer".into(), problem: e.to_string() }
}

impl ClipTokenizer {
    /// `dir` holds `vocab.json` and `merges.txt`; the context length and the padding token
    /// come from `tokenizer_config.json` when present (77 and `<|endoftext|>` otherwise).
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let config_path = dir.join("tokenizer_config.json");
        let config: serde_json::Value =
            if config_path.exists() { crate::weights::read_config(&config_path)? } else { serde_json::Value::Null };
        let max_length = config["model_max_length"].as_u64().filter(|&m| m > 2 && m < 100_000).unwrap_or(77) as usize;
        let pad = config["pad_token"].as_str().or(config["pad_token"]["content"].as_str()).unwrap_or(END).to_string();
        Self::from_files(&dir.join("vocab.json"), &dir.join("merges.txt"), max_length, &pad)
    }

    pub fn from_files(vocab: &Path, merges: &Path, max_length: usize, pad_token: &str) -> Result<Self, ModelError> {
        for file in [vocab, merges] {
            if !file.exists() {
                return Err(ModelError::Io { path: file.to_path_buf(), source: std::io::ErrorKind::NotFound.into() });
            }
        }
        let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
            .unk_token(END.into())
            .end_of_word_suffix("</w>".into())
            .build()
            .map_err(|e| build_error(vocab, e))?;
        let id = |token: &str| {
            bpe.token_to_id(token).ok_or_else(|| build_error(vocab, format!("no `{token}` in the vocabulary")))
        };
        let (start, end, pad_id) = (id(START)?, id(END)?, id(pad_token)?);
        let mut inner = Tokenizer::new(bpe);
        let whitespace = Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()), " ")
            .map_err(|e| build_error(vocab, e))?;
        inner.with_normalizer(Some(NormalizerSequence::new(vec![NFC.into(), whitespace.into(), Lowercase.into()])));
        let words = Split::new(SplitPattern::Regex(WORDS.into()), SplitDelimiterBehavior::Removed, true)
            .map_err(|e| build_error(vocab, e))?;
        inner.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
            words.into(),
            ByteLevel::new(false, true, true).into(),
        ])));
        inner.with_post_processor(Some(
            RobertaProcessing::new((END.into(), end), (START.into(), start))
                .trim_offsets(false)
                .add_prefix_space(false),
        ));
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| build_error(vocab, e))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_length),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id: 0,
            pad_token: pad_token.into(),
        }));
        Ok(Self { inner, max_length })
    }

    /// `max_length` ids: start, the text's tokens (truncated), end, padding.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.inner.encode(text, true).expect("CLIP tokenization cannot fail").get_ids().to_vec()
    }
}
