//! `adapter_config.json`: the fields that change inference are honoured, the ones that would need
//! an unimplemented forward pass are refused by name, the training-only ones are ignored.

use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::Value;

use crate::models::ModelError;

/// `target_modules`: names matched as PEFT does (exact or a `.name` suffix), or one regex that
/// must match the whole module name.
#[derive(Debug, Clone)]
pub enum TargetModules {
    Names(Vec<String>),
    Regex(Regex),
}

/// A `rank_pattern`/`alpha_pattern` entry: PEFT matches it as `(.*\.)?(KEY)$` from the start.
#[derive(Debug, Clone)]
struct Pattern<T> {
    regex: Regex,
    value: T,
}

#[derive(Debug, Clone)]
pub struct LoraConfig {
    path: PathBuf,
    pub r: usize,
    pub lora_alpha: f64,
    pub use_rslora: bool,
    pub target_modules: TargetModules,
    pub exclude_modules: Option<TargetModules>,
    layers_to_transform: Option<Vec<usize>>,
    /// Regexes that find a module's layer index (PEFT's default, or one per `layers_pattern`),
    /// compiled once here rather than for every module name matched.
    layer_index_patterns: Vec<Regex>,
    rank_pattern: Vec<Pattern<usize>>,
    alpha_pattern: Vec<Pattern<f64>>,
    /// Only meaningful for GPT-2's Conv1D; PEFT resets it for `nn.Linear`, so it never changes
    /// BERT's forward pass. Kept to say so in a warning.
    pub fan_in_fan_out: bool,
    pub modules_to_save: Vec<String>,
    /// `modules_to_save` as PEFT matches them, `(^|.*\.)NAME($|\..*)`.
    modules_to_save_patterns: Vec<Regex>,
    /// The base the adapter was trained on, as PEFT recorded it.
    pub base_model_name_or_path: Option<String>,
}

/// Fields whose non-default value would need a forward pass landfall does not implement.
const REFUSED_IF_SET: [&str; 8] = [
    "layer_replication",
    "trainable_token_indices",
    "target_parameters",
    "alora_invocation_tokens",
    "velora_config",
    "monteclora_config",
    "megatron_config",
    "modules_to_tie",
];

/// Boolean fields that are refused when true.
const REFUSED_IF_TRUE: [&str; 3] = ["use_dora", "use_qalora", "lora_bias"];

impl LoraConfig {
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: path.to_path_buf(),
            reason: format!("not valid JSON: {e}"),
        })?;
        // serde_json's map is sorted; PEFT takes the first matching pattern in file order.
        let order: PatternOrder = serde_json::from_str(&text).unwrap_or_default();
        Self::from_value(path, &value, &order)
    }

    pub fn from_value(path: &Path, v: &Value, order: &PatternOrder) -> Result<Self, ModelError> {
        let err = |field: &str, reason: String| ModelError::Adapter {
            path: path.to_path_buf(),
            field: field.to_string(),
            reason,
        };
        let obj = v
            .as_object()
            .ok_or_else(|| err("(top level)", "expected a JSON object".into()))?;
        let get = |k: &str| obj.get(k).filter(|v| !v.is_null());

        match get("peft_type").and_then(Value::as_str) {
            Some("LORA") => {}
            Some(other) => {
                return Err(err(
                    "peft_type",
                    format!("{other:?} is not supported; landfall serves LORA adapters"),
                ))
            }
            None => return Err(err("peft_type", "missing; expected \"LORA\"".into())),
        }
        match get("task_type").and_then(Value::as_str) {
            Some("SEQ_CLS") | None => {}
            Some(other) => {
                return Err(err(
                    "task_type",
                    format!("{other:?} is not supported; classifiers need SEQ_CLS"),
                ))
            }
        }
        for field in REFUSED_IF_SET {
            let set = match get(field) {
                None => false,
                Some(Value::Array(a)) => !a.is_empty(),
                Some(Value::Object(o)) => !o.is_empty(),
                Some(_) => true,
            };
            if set {
                return Err(err(
                    field,
                    "is set, which landfall does not implement".into(),
                ));
            }
        }
        for field in REFUSED_IF_TRUE {
            if get(field).and_then(Value::as_bool) == Some(true) {
                let what = if field == "use_dora" { " (DoRA)" } else { "" };
                return Err(err(
                    field,
                    format!("is true{what}, which landfall does not implement"),
                ));
            }
        }
        match get("bias").and_then(Value::as_str) {
            None | Some("none") => {}
            Some(other) => {
                return Err(err(
                    "bias",
                    format!("{other:?} is not supported; only \"none\""),
                ))
            }
        }

        let r = match get("r").and_then(Value::as_u64) {
            Some(r) if r > 0 => r as usize,
            _ => return Err(err("r", "missing or not a positive integer".into())),
        };
        let lora_alpha = get("lora_alpha")
            .and_then(Value::as_f64)
            .ok_or_else(|| err("lora_alpha", "missing or not a number".into()))?;
        let target_modules = match get("target_modules") {
            Some(v) => parse_targets(v).map_err(|reason| err("target_modules", reason))?,
            None => {
                return Err(err(
                    "target_modules",
                    "missing; name the modules the adapter changes".into(),
                ))
            }
        };
        let exclude_modules = get("exclude_modules")
            .map(parse_targets)
            .transpose()
            .map_err(|reason| err("exclude_modules", reason))?;
        let layers_to_transform = match get("layers_to_transform") {
            None => None,
            Some(Value::Number(n)) => Some(vec![n
                .as_u64()
                .ok_or_else(|| err("layers_to_transform", "not a layer index".into()))?
                as usize]),
            Some(Value::Array(a)) if a.is_empty() => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|x| x.as_u64().map(|n| n as usize))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| err("layers_to_transform", "expected layer indices".into()))?,
            ),
            Some(other) => {
                return Err(err(
                    "layers_to_transform",
                    format!("expected an index or a list of indices, got {other}"),
                ))
            }
        };
        let layers_pattern = string_or_list(get("layers_pattern"))
            .map_err(|reason| err("layers_pattern", reason))?;
        let rank_pattern = parse_patterns(get("rank_pattern"), &order.rank_pattern, |v| {
            v.as_u64().filter(|r| *r > 0).map(|r| r as usize)
        })
        .map_err(|reason| err("rank_pattern", reason))?;
        let alpha_pattern =
            parse_patterns(get("alpha_pattern"), &order.alpha_pattern, Value::as_f64)
                .map_err(|reason| err("alpha_pattern", reason))?;
        let modules_to_save = string_or_list(get("modules_to_save"))
            .map_err(|reason| err("modules_to_save", reason))?;

        Ok(Self {
            path: path.to_path_buf(),
            r,
            lora_alpha,
            use_rslora: get("use_rslora").and_then(Value::as_bool).unwrap_or(false),
            target_modules,
            exclude_modules,
            layers_to_transform,
            layer_index_patterns: layer_index_patterns(&layers_pattern),
            modules_to_save_patterns: modules_to_save
                .iter()
                .filter_map(|m| Regex::new(&format!(r"^(?:.*\.)?(?:{m})(?:\..*)?$")).ok())
                .collect(),
            rank_pattern,
            alpha_pattern,
            fan_in_fan_out: get("fan_in_fan_out")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            modules_to_save,
            base_model_name_or_path: get("base_model_name_or_path")
                .and_then(Value::as_str)
                .map(String::from),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether PEFT would put LoRA on module `key` (`check_target_module_exists`).
    pub fn targets(&self, key: &str) -> bool {
        if let Some(exclude) = &self.exclude_modules {
            if matches_target(exclude, key) {
                return false;
            }
        }
        if self.is_module_to_save(key) {
            return false;
        }
        match &self.target_modules {
            TargetModules::Regex(re) => re.is_match(key),
            TargetModules::Names(names) => {
                if names.iter().any(|n| n == key) {
                    return true;
                }
                if !names.iter().any(|n| key.ends_with(&format!(".{n}"))) {
                    return false;
                }
                match &self.layers_to_transform {
                    None => true,
                    Some(layers) => self
                        .layer_index(key)
                        .is_some_and(|index| layers.contains(&index)),
                }
            }
        }
    }

    /// Whether `key` is inside a module listed in `modules_to_save`.
    pub fn is_module_to_save(&self, key: &str) -> bool {
        self.modules_to_save_patterns
            .iter()
            .any(|re| re.is_match(key))
    }

    fn layer_index(&self, key: &str) -> Option<usize> {
        self.layer_index_patterns
            .iter()
            .find_map(|re| re.captures(key)?.name("idx")?.as_str().parse().ok())
    }

    /// Rank and scaling of module `key`: `rank_pattern`/`alpha_pattern` override `r` and
    /// `lora_alpha`; scaling is `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub fn rank_and_scaling(&self, key: &str) -> (usize, f64) {
        let r = self
            .rank_pattern
            .iter()
            .find(|p| p.regex.is_match(key))
            .map_or(self.r, |p| p.value);
        let alpha = self
            .alpha_pattern
            .iter()
            .find(|p| p.regex.is_match(key))
            .map_or(self.lora_alpha, |p| p.value);
        let scaling = if self.use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        };
        (r, scaling)
    }
}

/// PEFT's layer-index regexes: the first numbered segment by default, else `PATTERN.N.`.
fn layer_index_patterns(layers_pattern: &[String]) -> Vec<Regex> {
    let patterns: Vec<String> = if layers_pattern.is_empty() {
        vec![r"^.*?\.[^.]*\.(?P<idx>\d+)\.".to_string()]
    } else {
        layers_pattern
            .iter()
            .map(|p| format!(r"^(?:.*?\.)?{p}\.(?P<idx>\d+)\."))
            .collect()
    };
    patterns.iter().filter_map(|p| Regex::new(p).ok()).collect()
}

fn matches_target(t: &TargetModules, key: &str) -> bool {
    match t {
        TargetModules::Regex(re) => re.is_match(key),
        TargetModules::Names(names) => names
            .iter()
            .any(|n| n == key || key.ends_with(&format!(".{n}"))),
    }
}

fn parse_targets(v: &Value) -> Result<TargetModules, String> {
    match v {
        Value::String(s) => full_match_regex(s).map(TargetModules::Regex),
        Value::Array(_) => {
            let names = string_or_list(Some(v))?;
            if names.is_empty() {
                return Err("is an empty list".into());
            }
            Ok(TargetModules::Names(names))
        }
        other => Err(format!(
            "expected a list of names or a regex string, got {other}"
        )),
    }
}

/// Python's `re.fullmatch(pattern, key)`.
fn full_match_regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| format!("regex {pattern:?} does not compile: {e}"))
}

fn string_or_list(v: Option<&Value>) -> Result<Vec<String>, String> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(String::from)
                    .ok_or_else(|| format!("expected strings, got {i}"))
            })
            .collect(),
        Some(other) => Err(format!(
            "expected a string or a list of strings, got {other}"
        )),
    }
}

/// The keys of `rank_pattern` and `alpha_pattern` in the order the file lists them.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PatternOrder {
    #[serde(default, deserialize_with = "ordered_keys")]
    rank_pattern: Vec<String>,
    #[serde(default, deserialize_with = "ordered_keys")]
    alpha_pattern: Vec<String>,
}

fn ordered_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object or null")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut keys = Vec::new();
            while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                keys.push(k);
            }
            Ok(keys)
        }
    }
    d.deserialize_any(Keys)
}

fn parse_patterns<T>(
    v: Option<&Value>,
    file_order: &[String],
    parse: impl Fn(&Value) -> Option<T>,
) -> Result<Vec<Pattern<T>>, String> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let map = v
        .as_object()
        .ok_or_else(|| format!("expected an object of pattern -> value, got {v}"))?;
    let mut keys: Vec<&String> = file_order.iter().filter(|k| map.contains_key(*k)).collect();
    keys.extend(map.keys().filter(|k| !file_order.contains(k)));
    keys.into_iter()
        .map(|key| {
            let value = &map[key];
            let regex = Regex::new(&format!(r"^(?:.*\.)?(?:{key})$"))
                .map_err(|e| format!("pattern {key:?} does not compile: {e}"))?;
            let value = parse(value).ok_or_else(|| format!("{key:?}: bad value {value}"))?;
            Ok(Pattern { regex, value })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: Value) -> Result<LoraConfig, ModelError> {
        let order: PatternOrder = serde_json::from_value(v.clone()).unwrap_or_default();
        LoraConfig::from_value(Path::new("adapter_config.json"), &v, &order)
    }

    #[test]
    fn first_pattern_in_file_order_wins() {
        let text = r#"{"rank_pattern": {"z.*value": 2, "value": 4}, "alpha_pattern": null}"#;
        let order: PatternOrder = serde_json::from_str(text).unwrap();
        assert_eq!(order.rank_pattern, vec!["z.*value", "value"]);
        assert!(order.alpha_pattern.is_empty());
    }

    fn base() -> Value {
        json!({"peft_type": "LORA", "task_type": "SEQ_CLS", "r": 8, "lora_alpha": 32,
               "target_modules": ["query", "value"], "modules_to_save": ["classifier", "score"]})
    }

    #[test]
    fn names_match_by_suffix() {
        let c = cfg(base()).unwrap();
        assert!(c.targets("bert.encoder.layer.3.attention.self.query"));
        assert!(!c.targets("bert.encoder.layer.3.attention.self.key"));
        assert!(!c.targets("classifier"));
        assert_eq!(c.rank_and_scaling("x.query"), (8, 4.0));
    }

    #[test]
    fn regex_targets_match_whole_names() {
        let mut v = base();
        v["target_modules"] = json!(r".*layer\.1\..*query");
        let c = cfg(v).unwrap();
        assert!(c.targets("bert.encoder.layer.1.attention.self.query"));
        assert!(!c.targets("bert.encoder.layer.11.attention.self.query"));
    }

    #[test]
    fn layers_to_transform_picks_the_first_index() {
        let mut v = base();
        v["layers_to_transform"] = json!([1]);
        v["target_modules"] = json!(["dense"]);
        let c = cfg(v).unwrap();
        assert!(c.targets("bert.encoder.layer.1.output.dense"));
        assert!(!c.targets("bert.encoder.layer.0.output.dense"));
        assert!(!c.targets("bert.pooler.dense"));
    }

    #[test]
    fn patterns_override_rank_and_alpha() {
        let mut v = base();
        v["rank_pattern"] = json!({"value": 4});
        v["alpha_pattern"] = json!({"query": 16});
        v["use_rslora"] = json!(true);
        let c = cfg(v).unwrap();
        assert_eq!(
            c.rank_and_scaling("bert.encoder.layer.0.attention.self.value"),
            (4, 16.0)
        );
        let (r, s) = c.rank_and_scaling("bert.encoder.layer.0.attention.self.query");
        assert_eq!(r, 8);
        assert!((s - 16.0 / 8f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn refuses_what_it_does_not_implement() {
        for (field, value) in [
            ("use_dora", json!(true)),
            ("bias", json!("all")),
            ("peft_type", json!("IA3")),
            ("layer_replication", json!([[0, 1]])),
        ] {
            let mut v = base();
            v[field] = value;
            let e = cfg(v).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }
}
