//! Decoding strategies, written to make the same choices as transformers' `generate`: greedy
//! (the default), beam search (`_beam_search`, with its length penalty and early-stopping
//! heuristic), and sampling (temperature, top-k, top-p, with our own seeded generator). The
//! logits processors that matter here (repetition penalty, minimum new tokens) are applied where
//! transformers applies them: to logits for greedy/sampling, to log-probabilities in beam search.

use candle_core::Result;

use crate::util::InvalidValue;

/// What drives the decoder one position at a time.
pub trait StepModel {
    /// Feeds one token per row and returns each row's next-token logits (f32).
    fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>>;
    /// Reorders (or multiplies) rows: new row `i` continues old row `rows[i]`.
    fn select_rows(&mut self, rows: &[u32]) -> Result<()>;
}

/// transformers' `early_stopping`: `false` (its default), `true`, or `"never"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    #[default]
    Heuristic,
    Always,
    Never,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1.0 keeps all).
    pub top_p: f32,
    /// Keep the `top_k` most likely tokens (0 keeps all).
    pub top_k: usize,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOptions {
    pub max_new_tokens: usize,
    pub min_new_tokens: usize,
    pub num_beams: usize,
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
    pub repetition_penalty: f32,
    pub sampling: Option<Sampling>,
}

impl Default for GenerationOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 30,
            min_new_tokens: 0,
            num_beams: 1,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            repetition_penalty: 1.0,
            sampling: None,
        }
    }
}

impl GenerationOptions {
    /// Checks the values a user can give; the message names the flag at fault.
    pub fn validate(&self) -> std::result::Result<(), InvalidValue> {
        if self.max_new_tokens == 0 {
            return Err("--max-new-tokens must be at least 1".into());
        }
        if self.min_new_tokens > self.max_new_tokens {
            return Err(InvalidValue(format!(
                "--min-new-tokens {} exceeds --max-new-tokens {}",
                self.min_new_tokens, self.max_new_tokens
            )));
        }
        if self.num_beams == 0 {
            return Err("--num-beams must be at least 1".into());
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err("--repetition-penalty must be a positive number".into());
        }
        if !self.length_penalty.is_finite() {
            return Err("--length-penalty must be a finite number".into());
        }
        if let Some(s) = &self.sampling {
            if self.num_beams > 1 {
                return Err("sampling (--temperature/--top-p/--top-k) cannot be combined with --num-beams > 1".into());
            }
            if !(s.temperature > 0.0 && s.temperature.is_finite()) {
                return Err("--temperature must be a positive number".into());
            }
            if !(s.top_p > 0.0 && s.top_p <= 1.0) {
                return Err("--top-p must be in (0, 1]".into());
            }
        }
        Ok(())
    }
}

/// Generated token ids (no prompt), without the final EOS.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    pub stopped_at_eos: bool,
}

/// The processors transformers would build from these options, applied to one row.
struct Processors<'a> {
    opts: &'a GenerationOptions,
    eos: &'a [u32],
}

impl Processors<'_> {
    /// `context` is every id the row has seen (prompt, image tokens, generated); `generated` how
    /// many of them were generated.
    fn apply(&self, scores: &mut [f32], context: &[u32], generated: usize) {
        let p = self.opts.repetition_penalty;
        if p != 1.0 {
            let mut seen = context.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for id in seen {
                if let Some(s) = scores.get_mut(id as usize) {
                    *s = if *s < 0.0 { *s * p } else { *s / p };
                }
            }
        }
        if generated < self.opts.min_new_tokens {
            for &id in self.eos {
                if let Some(s) = scores.get_mut(id as usize) {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// Decodes from the prompt's last-position `logits` with the strategy the options select.
pub fn generate(
    model: &mut dyn StepModel,
    logits: Vec<f32>,
    context: &[u32],
    eos: &[u32],
    opts: &GenerationOptions,
) -> Result<Generated> {
    if opts.num_beams > 1 {
        beam_search(model, logits, context, eos, opts)
    } else {
        greedy_or_sample(model, logits, context, eos, opts)
    }
}

fn greedy_or_sample(
    model: &mut dyn StepModel,
    mut logits: Vec<f32>,
    context: &[u32],
    eos: &[u32],
    opts: &GenerationOptions,
) -> Result<Generated> {
    let processors = Processors { opts, eos };
    let mut seen = context.to_vec();
    let mut tokens = Vec::new();
    let mut rng = opts
        .sampling
        .as_ref()
        .map(|s| fastrand::Rng::with_seed(s.seed));
    loop {
        processors.apply(&mut logits, &seen, tokens.len());
        let next = match (&opts.sampling, rng.as_mut()) {
            (Some(s), Some(rng)) => sample(&logits, s, rng),
            _ => argmax(&logits),
        };
        if eos.contains(&next) {
            return Ok(Generated {
                tokens,
                stopped_at_eos: true,
            });
        }
        tokens.push(next);
        seen.push(next);
        if tokens.len() >= opts.max_new_tokens {
            return Ok(Generated {
                tokens,
                stopped_at_eos: false,
            });
        }
        logits = model
            .step(&[next])?
            .pop()
            .ok_or_else(|| candle_core::Error::Msg("decoder returned no logits".into()))?;
    }
}

/// The first index of the largest value, as `torch.argmax` picks.
fn argmax(scores: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best as u32
}

fn sample(logits: &[f32], s: &Sampling, rng: &mut fastrand::Rng) -> u32 {
    let mut order: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .collect();
    if order.is_empty() {
        return argmax(logits);
    }
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if s.top_k > 0 {
        order.truncate(s.top_k);
    }
    let max = logits[order[0]] / s.temperature;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| f64::from(logits[i] / s.temperature - max).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    // Nucleus: the smallest prefix whose mass reaches top_p (always at least one token).
    let mut keep = 0;
    let mut mass = 0.0;
    for w in &weights {
        keep += 1;
        mass += w / total;
        if mass >= f64::from(s.top_p) {
            break;
        }
    }
    let kept_total: f64 = weights[..keep].iter().sum();
    let mut draw = rng.f64() * kept_total;
    for (i, w) in weights[..keep].iter().enumerate() {
        if draw < *w {
            return order[i] as u32;
        }
        draw -= w;
    }
    order[keep - 1] as u32
}

fn log_softmax_row(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    let log_sum = sum.ln();
    row.iter().map(|&x| x - max - log_sum).collect()
}

/// Indices of the `k` largest values, largest first, ties broken by the lower index.
fn top_k_indices(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let k = k.min(idx.len());
    idx.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| {
        values[b].total_cmp(&values[a]).then(a.cmp(&b))
    });
    idx.truncate(k);
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx
}

struct Finished {
    score: f32,
    tokens: Vec<u32>,
}

/// transformers' vectorised `_beam_search` for one prompt, step by step.
fn beam_search(
    model: &mut dyn StepModel,
    logits: Vec<f32>,
    context: &[u32],
    eos: &[u32],
    opts: &GenerationOptions,
) -> Result<Generated> {
    let n = opts.num_beams;
    let vocab = logits.len();
    let keep = 2.max(1 + eos.len()) * n;
    let lp = opts.length_penalty;
    let processors = Processors { opts, eos };
    // All beams start as the prompt; only the first may expand at the first step.
    let mut running: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut running_scores = vec![-1.0e9f32; n];
    running_scores[0] = 0.0;
    let mut rows: Vec<Vec<f32>> = vec![logits; n];
    model.select_rows(&vec![0; n])?;
    let mut finished: Vec<Finished> = Vec::new();
    let mut heuristic_unsatisfied = true;
    let mut generated = 0usize; // = cur_len - decoder_prompt_len
    loop {
        let mut flat = Vec::with_capacity(n * vocab);
        for (b, row) in rows.iter().enumerate() {
            let mut lp_row = log_softmax_row(row);
            let seen: Vec<u32> = context.iter().chain(&running[b]).copied().collect();
            processors.apply(&mut lp_row, &seen, generated);
            flat.extend(lp_row.into_iter().map(|x| x + running_scores[b]));
        }
        let top = top_k_indices(&flat, keep);
        let at_max = generated + 1 >= opts.max_new_tokens;
        let candidates: Vec<(usize, u32, f32, bool)> = top
            .iter()
            .map(|&i| {
                let token = (i % vocab) as u32;
                (i / vocab, token, flat[i], at_max || eos.contains(&token))
            })
            .collect();

        // Finished hypotheses: only those among the first n candidates count.
        let all_full = finished.len() >= n;
        let block_all = all_full && opts.early_stopping == EarlyStopping::Always;
        if heuristic_unsatisfied && !block_all {
            let norm = ((generated + 1) as f32).powf(lp);
            for &(beam, token, score, hits) in candidates.iter().take(n) {
                if hits {
                    let mut tokens = running[beam].clone();
                    tokens.push(token);
                    finished.push(Finished {
                        score: score / norm,
                        tokens,
                    });
                }
            }
            // Stable: an older hypothesis wins a tie, as it comes first in transformers' merge.
            finished.sort_by(|a, b| b.score.total_cmp(&a.score));
            finished.truncate(n);
        }

        // Running beams for the next step: the best n that did not stop.
        let running_candidates: Vec<f32> = candidates
            .iter()
            .map(|&(_, _, score, hits)| if hits { score - 1.0e9 } else { score })
            .collect();
        let next = top_k_indices(&running_candidates, n);
        let sources: Vec<u32> = next.iter().map(|&j| candidates[j].0 as u32).collect();
        running = next
            .iter()
            .map(|&j| {
                let (beam, token, _, _) = candidates[j];
                let mut seq = running[beam].clone();
                seq.push(token);
                seq
            })
            .collect();
        running_scores = next.iter().map(|&j| running_candidates[j]).collect();
        generated += 1;

        // The early-stopping heuristic, on the state after this step.
        let best_len = if opts.early_stopping == EarlyStopping::Never && lp > 0.0 {
            opts.max_new_tokens
        } else {
            generated
        };
        let best_possible = running_scores[0] / (best_len as f32).powf(lp);
        if finished.len() >= n {
            let worst = finished
                .iter()
                .map(|f| f.score)
                .fold(f32::INFINITY, f32::min);
            heuristic_unsatisfied &= best_possible > worst;
        }
        let all_finished = finished.len() >= n && opts.early_stopping == EarlyStopping::Always;
        let all_hit = candidates.iter().all(|c| c.3);
        if !heuristic_unsatisfied || all_finished || all_hit {
            break;
        }
        model.select_rows(&sources)?;
        let last: Vec<u32> = running
            .iter()
            .map(|seq| seq.last().copied().unwrap_or(0))
            .collect();
        rows = model.step(&last)?;
    }
    let best = finished.into_iter().next().ok_or_else(|| {
        candle_core::Error::Msg("beam search ended without a finished hypothesis".into())
    })?;
    let mut tokens = best.tokens;
    let stopped_at_eos = tokens.last().is_some_and(|t| eos.contains(t));
    if stopped_at_eos {
        tokens.pop();
    }
    Ok(Generated {
        tokens,
        stopped_at_eos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy decoder whose logits depend only on the last token: a fixed table.
    struct Table {
        table: Vec<Vec<f32>>,
        rows: usize,
    }

    impl StepModel for Table {
        fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
            assert_eq!(tokens.len(), self.rows);
            Ok(tokens
                .iter()
                .map(|&t| self.table[t as usize].clone())
                .collect())
        }
        fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
            self.rows = rows.len();
            Ok(())
        }
    }

    fn table() -> Table {
        // token 0 = EOS. From 1: 2 is likely; from 2: 3; from 3: EOS.
        Table {
            table: vec![
                vec![0.0, 0.0, 0.0, 0.0],
                vec![-5.0, -1.0, 2.0, 0.5],
                vec![-1.0, 0.2, -2.0, 3.0],
                vec![4.0, -1.0, 0.0, 0.1],
            ],
            rows: 1,
        }
    }

    #[test]
    fn greedy_follows_the_table_and_stops_at_eos() {
        let mut t = table();
        let first = t.table[1].clone();
        let g = generate(&mut t, first, &[1], &[0], &GenerationOptions::default()).unwrap();
        assert_eq!(g.tokens, vec![2, 3]);
        assert!(g.stopped_at_eos);
    }

    #[test]
    fn min_new_tokens_forbids_early_eos() {
        let mut t = table();
        let first = t.table[1].clone();
        let opts = GenerationOptions {
            min_new_tokens: 3,
            max_new_tokens: 3,
            ..Default::default()
        };
        let g = generate(&mut t, first, &[1], &[0], &opts).unwrap();
        assert_eq!(g.tokens.len(), 3);
        assert!(!g.tokens.contains(&0));
    }

    #[test]
    fn beam_search_finds_the_best_finished_sequence() {
        let mut t = table();
        let first = t.table[1].clone();
        let opts = GenerationOptions {
            num_beams: 2,
            max_new_tokens: 5,
            ..Default::default()
        };
        let g = generate(&mut t, first, &[1], &[0], &opts).unwrap();
        assert_eq!(g.tokens, vec![2, 3]);
        assert!(g.stopped_at_eos);
    }

    #[test]
    fn sampling_is_repeatable_with_a_seed_and_top_p_tiny_is_greedy() {
        let logits = vec![0.1, 2.0, 1.9, -3.0];
        let s = Sampling {
            temperature: 1.0,
            top_p: 1e-6,
            top_k: 0,
            seed: 7,
        };
        let mut rng = fastrand::Rng::with_seed(7);
        assert_eq!(sample(&logits, &s, &mut rng), 1);
        let wide = Sampling { top_p: 1.0, ..s };
        let draws = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..20)
                .map(|_| sample(&logits, &wide, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert!(
            draws(3).iter().any(|&t| t != 1),
            "sampling never left the argmax"
        );
    }

    #[test]
    fn options_name_the_flag_at_fault() {
        let bad = GenerationOptions {
            min_new_tokens: 40,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().0.contains("--min-new-tokens"));
    }
}
