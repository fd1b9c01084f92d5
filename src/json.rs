//! JSON helpers.

use serde::ser::{Serialize, SerializeMap, Serializer};

/// Probabilities by label name, serialized as a JSON object in label-id order.
///
/// serde_json's own map sorts its keys (landfall does not enable `preserve_order`, which would
/// rebuild candle with other features), and subscribers expect the labels in id order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelScores(pub Vec<(String, f32)>);

impl LabelScores {
    pub fn new(labels: &[String], scores: &[f32]) -> Self {
        Self(labels.iter().cloned().zip(scores.iter().copied()).collect())
    }

    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(l, _)| l.as_str())
    }
}

impl Serialize for LabelScores {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (label, score) in &self.0 {
            map.serialize_entry(label, &f64::from(*score))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_label_order() {
        let labels = vec!["负面".to_string(), "中性".to_string(), "正面".to_string()];
        let s = LabelScores::new(&labels, &[0.25, 0.25, 0.5]);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"负面":0.25,"中性":0.25,"正面":0.5}"#
        );
    }
}
