//! A BPE tokenizer read from a Hugging Face `tokenizer.json` (the tokenizer section of a
//! split-model file), byte-level (GPT-2 style, as LLaMA-family BPE models) or over plain
//! characters (the embedded default: a vocabulary of characters and no merges).
//!
//! Encoding splits the text on special (added) tokens, pre-tokenizes the rest like GPT-2
//! (contractions, letter runs with one leading space, number runs or single digits,
//! punctuation runs, whitespace), maps bytes to the GPT-2 printable alphabet when
//! byte-level, and applies merges by rank. The file is untrusted: malformed JSON, missing
//! fields and ids outside the vocabulary are errors, never panics.

use std::collections::HashMap;

use crate::StdError;

/// A BPE tokenizer.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    vocab: HashMap<String, u32>,
    tokens: Vec<String>,
    merges: HashMap<(String, String), usize>,
    merge_list: Vec<(String, String)>,
    specials: Vec<(String, u32)>,
    byte_level: bool,
    digits: bool,
    /// GPT-2's byte → printable character map and its inverse (byte-level models).
    bytes: [char; 256],
    unbytes: HashMap<char, u8>,
}

fn bad(m: impl Into<String>) -> StdError {
    StdError::Tokenizer(m.into())
}

/// GPT-2's map from bytes to printable characters.
fn byte_map() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        map[b as usize] = if printable {
            char::from_u32(b).unwrap_or('\0')
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('\0')
        };
    }
    map
}

impl Tokenizer {
    /// From parts: tokens by id, merges as `"a b"`, the ids of special tokens, and whether
    /// the model is byte-level and splits digits one by one.
    pub fn from_parts(
        tokens: Vec<String>,
        merges: &[String],
        special_ids: &[u32],
        byte_level: bool,
        digits: bool,
    ) -> Result<Self, StdError> {
        if tokens.is_empty() || tokens.len() > u32::MAX as usize {
            return Err(bad("empty vocabulary"));
        }
        let mut vocab = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            vocab.entry(t.clone()).or_insert(i as u32);
        }
        let mut merge_list = Vec::with_capacity(merges.len());
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let (a, b) = m.split_once(' ').ok_or_else(|| bad(format!("merge {m:?} is not two symbols")))?;
            ranks.entry((a.to_string(), b.to_string())).or_insert(rank);
            merge_list.push((a.to_string(), b.to_string()));
        }
        let mut specials = Vec::new();
        for &id in special_ids {
            let t = tokens.get(id as usize).ok_or_else(|| bad(format!("special id {id} outside the vocabulary")))?;
            if !t.is_empty() {
                specials.push((t.clone(), id));
            }
        }
        // Longest first, so that a special token that prefixes another never wins.
        specials.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        let bytes = byte_map();
        let unbytes = bytes.iter().enumerate().map(|(b, c)| (*c, b as u8)).collect();
        Ok(Self { vocab, tokens, merges: ranks, merge_list, specials, byte_level, digits, bytes, unbytes })
    }

    /// From a Hugging Face `tokenizer.json` with a BPE model.
    pub fn from_hf_json(text: &str) -> Result<Self, StdError> {
        let j: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let model = j.get("model").ok_or_else(|| bad("no model"))?;
        if model.get("type").and_then(|t| t.as_str()) != Some("BPE") {
            return Err(bad("only BPE models are supported"));
        }
        let v = model.get("vocab").and_then(|v| v.as_object()).ok_or_else(|| bad("no vocab"))?;
        let mut tokens = vec![String::new(); v.len()];
        let mut extra: Vec<(u32, String)> = Vec::new();
        for (k, id) in v {
            let id = id.as_u64().filter(|i| *i < u32::MAX as u64).ok_or_else(|| bad(format!("id of {k:?}")))? as usize;
            match tokens.get_mut(id) {
                Some(slot) => *slot = k.clone(),
                None => extra.push((id as u32, k.clone())),
            }
        }
        let mut added_ids = Vec::new();
        if let Some(added) = j.get("added_tokens").and_then(|a| a.as_array()) {
            for a in added {
                let id = a.get("id").and_then(|i| i.as_u64()).ok_or_else(|| bad("added token without id"))?;
                let content = a.get("content").and_then(|c| c.as_str()).ok_or_else(|| bad("added token content"))?;
                extra.push((id as u32, content.to_string()));
                added_ids.push(id as u32);
            }
        }
        for (id, content) in extra {
            let id = id as usize;
            if id > tokens.len() + (1 << 20) {
                return Err(bad(format!("id {id} far outside the vocabulary")));
            }
            if id >= tokens.len() {
                tokens.resize(id + 1, String::new());
            }
            tokens[id] = content;
        }
        let mut merges = Vec::new();
        for m in model.get("merges").and_then(|m| m.as_array()).map(Vec::as_slice).unwrap_or(&[]) {
            match m {
                serde_json::Value::String(s) => merges.push(s.clone()),
                serde_json::Value::Array(p) if p.len() == 2 => {
                    let a = p[0].as_str().ok_or_else(|| bad("merge"))?;
                    let b = p[1].as_str().ok_or_else(|| bad("merge"))?;
                    merges.push(format!("{a} {b}"));
                }
                _ => return Err(bad("merge entry")),
            }
        }
        let pre = j.get("pre_tokenizer").map(|p| p.to_string()).unwrap_or_default();
        let byte_level =
            pre.contains("ByteLevel") || j.get("decoder").is_some_and(|d| d.to_string().contains("ByteLevel"));
        let digits = pre.contains("\"individual_digits\":true");
        Self::from_parts(tokens, &merges, &added_ids, byte_level, digits)
    }

    /// The tokenizer as a Hugging Face `tokenizer.json`.
    pub fn to_hf_json(&self) -> String {
        let vocab: serde_json::Map<String, serde_json::Value> = self
            .tokens
            .iter()
            .enumerate()
            .filter(|(i, t)| self.vocab.get(*t) == Some(&(*i as u32)))
            .map(|(i, t)| (t.clone(), i.into()))
            .collect();
        let added: Vec<serde_json::Value> = self
            .specials
            .iter()
            .map(|(t, id)| {
                serde_json::json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                        "normalized": false, "special": true})
            })
            .collect();
        let merges: Vec<String> = self.merge_list.iter().map(|(a, b)| format!("{a} {b}")).collect();
        let mut pre = Vec::new();
        if self.digits {
            pre.push(serde_json::json!({"type": "Digits", "individual_digits": true}));
        }
        if self.byte_level {
            pre.push(
                serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}),
            );
        }
        serde_json::json!({
            "version": "1.0",
            "added_tokens": added,
            "pre_tokenizer": if pre.is_empty() { serde_json::Value::Null } else { serde_json::json!({"type": "Sequence", "pretokenizers": pre}) },
            "truncation": null,
            "padding": null,
            "normalizer": null,
            "post_processor": null,
            "decoder": if self.byte_level {
                serde_json::json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true})
            } else {
                // Characters joined as they are (without a decoder, tokens are joined by spaces).
                serde_json::json!({"type": "Fuse"})
            },
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges},
        })
        .to_string()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The id of a token string.
    pub fn token_id(&self, t: &str) -> Option<u32> {
        self.vocab.get(t).copied()
    }

    /// Token ids of `text` (special tokens in the text are recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, StdError> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let next = self
                .specials
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|p| (p, s, *id)))
                .min_by_key(|x| x.0);
            match next {
                Some((p, s, id)) => {
                    self.encode_plain(&rest[..p], &mut out)?;
                    out.push(id);
                    rest = &rest[p + s.len()..];
                }
                None => {
                    self.encode_plain(rest, &mut out)?;
                    rest = "";
                }
            }
        }
        Ok(out)
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) -> Result<(), StdError> {
        for piece in self.pre_tokenize(text) {
            let symbols: Vec<String> = if self.byte_level {
                piece.bytes().map(|b| self.bytes[b as usize].to_string()).collect()
            } else {
                piece.chars().map(|c| c.to_string()).collect()
            };
            for s in self.bpe(symbols) {
                let id = self.vocab.get(&s).ok_or_else(|| bad(format!("no token for {s:?}")))?;
                out.push(*id);
            }
        }
        Ok(())
    }

    fn bpe(&self, mut s: Vec<String>) -> Vec<String> {
        loop {
            let best = (0..s.len().saturating_sub(1))
                .filter_map(|i| self.merges.get(&(s[i].clone(), s[i + 1].clone())).map(|r| (*r, i)))
                .min();
            let Some((_, i)) = best else { return s };
            let merged = format!("{}{}", s[i], s[i + 1]);
            s[i] = merged;
            s.remove(i + 1);
        }
    }

    /// GPT-2 pre-tokenization (single digits when the model asks for it); without byte-level
    /// the text is one piece.
    fn pre_tokenize<'a>(&self, text: &'a str) -> Vec<&'a str> {
        if !self.byte_level {
            return if text.is_empty() { Vec::new() } else { vec![text] };
        }
        let c: Vec<(usize, char)> = text.char_indices().collect();
        let n = c.len();
        let at = |i: usize| if i < n { c[i].0 } else { text.len() };
        let mut out = Vec::new();
        let mut i = 0;
        while i < n {
            let start = i;
            let ch = c[i].1;
            if ch == '\'' && i + 1 < n {
                let two = if i + 2 < n { Some((c[i + 1].1, c[i + 2].1)) } else { None };
                let len = match (c[i + 1].1, two) {
                    (_, Some(('r', 'e'))) | (_, Some(('v', 'e'))) | (_, Some(('l', 'l'))) => 3,
                    ('s' | 't' | 'm' | 'd', _) => 2,
                    _ => 0,
                };
                if len > 0 {
                    out.push(&text[at(i)..at(i + len)]);
                    i += len;
                    continue;
                }
            }
            let mut j = i;
            if ch == ' ' && i + 1 < n && !c[i + 1].1.is_whitespace() {
                j += 1;
            }
            let k = c[j].1;
            if k.is_alphabetic() {
                while j < n && c[j].1.is_alphabetic() {
                    j += 1;
                }
            } else if k.is_numeric() {
                if self.digits {
                    // Digits stand alone, without a leading space.
                    if j > i {
                        out.push(&text[at(i)..at(j)]);
                        i = j;
                        continue;
                    }
                    j += 1;
                } else {
                    while j < n && c[j].1.is_numeric() {
                        j += 1;
                    }
                }
            } else if !k.is_whitespace() {
                while j < n && !(c[j].1.is_whitespace() || c[j].1.is_alphabetic() || c[j].1.is_numeric()) {
                    j += 1;
                }
            } else {
                while j < n && c[j].1.is_whitespace() {
                    j += 1;
                }
                if j < n && j - start > 1 {
                    j -= 1;
                }
            }
            out.push(&text[at(start)..at(j)]);
            i = j;
        }
        out
    }

    /// Text of `ids`; special tokens are dropped unless `keep_special`. Unknown ids are an
    /// error.
    pub fn decode(&self, ids: &[u32], keep_special: bool) -> Result<String, StdError> {
        let mut s = String::new();
        for &id in ids {
            let t = self.tokens.get(id as usize).ok_or_else(|| bad(format!("id {id} outside the vocabulary")))?;
            if !keep_special && self.specials.iter().any(|x| x.1 == id) {
                continue;
            }
            s.push_str(t);
        }
        if !self.byte_level {
            return Ok(s);
        }
        let mut bytes = Vec::with_capacity(s.len());
        for ch in s.chars() {
            match self.unbytes.get(&ch) {
                Some(b) => bytes.push(*b),
                None => bytes.extend(ch.to_string().as_bytes()),
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn toy() -> Tokenizer {
        let map = byte_map();
        let mut tokens: Vec<String> = (0..=255u8).map(|b| map[b as usize].to_string()).collect();
        for t in ["Ġt", "he", "Ġthe", "<|end|>"] {
            tokens.push(t.into());
        }
        let merges = vec!["Ġ t".to_string(), "h e".into(), "Ġt he".into()];
        Tokenizer::from_parts(tokens, &merges, &[259], true, true).unwrap()
    }

    #[test]
    fn byte_level_round_trip_and_merges() {
        let t = toy();
        let ids = t.encode("a the<|end|> 12 don't  x").unwrap();
        assert!(ids.contains(&258) && ids.contains(&259));
        assert_eq!(t.decode(&ids, true).unwrap(), "a the<|end|> 12 don't  x");
        assert_eq!(t.decode(&ids, false).unwrap(), "a the 12 don't  x");
        let again = Tokenizer::from_hf_json(&t.to_hf_json()).unwrap();
        assert_eq!(again.encode("a the<|end|> 12 don't  x").unwrap(), ids);
    }

    #[test]
    fn pre_tokenizer_splits_like_gpt2() {
        let t = toy();
        assert_eq!(
            t.pre_tokenize("Hello world's  end 42!?"),
            ["Hello", " world", "'s", " ", " end", " ", "4", "2", "!?"]
        );
    }

    #[test]
    fn bad_files_are_errors() {
        for j in ["", "{}", r#"{"model":{"type":"WordPiece"}}"#, r#"{"model":{"type":"BPE","vocab":{"a":-1}}}"#] {
            assert!(Tokenizer::from_hf_json(j).is_err(), "{j}");
        }
        assert!(toy().decode(&[100_000], false).is_err());
    }
}
