//! MARILL fine-tuning (layer freezing, unmerged LoRA, head merging, distillation) on candle.
//!
//! Not implemented yet: this crate reserves its place in the workspace so that the
//! dependency direction (`marill-core` ← `marill-std` ← `marill-train`) is fixed from the
//! start. Its issue fills it; until then it exports nothing.
