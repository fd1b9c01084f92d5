//! Prompt templates for BLIP-2: named texts with `{question}`, `{camera}` and `{choices}`
//! placeholders (`{{` and `}}` for literal braces). The built-in set covers captions and VQA in
//! English and Chinese; config files and `--template-text` add or replace templates, few-shot
//! examples included (a template is any text, newlines and all).

use std::collections::BTreeMap;
use std::fmt;

/// The template `landfall ask` uses unless told otherwise.
pub const DEFAULT_VQA: &str = "vqa";
/// The template answer choices are scored after, unless told otherwise.
pub const DEFAULT_CHOICES: &str = "choices";

const BUILTIN: &[(&str, &str)] = &[
    ("caption_zh", "图片内容描述:"),
    ("vqa", "Question: {question} Answer:"),
    ("vqa_zh", "问题：{question} 回答："),
    (
        "choices",
        "Question: {question} Choices: {choices}. Answer:",
    ),
    ("choices_zh", "问题：{question} 选项：{choices}。回答："),
    ("camera", "A photo from the {camera} camera of"),
];

/// The values a template may ask for.
#[derive(Debug, Clone, Default)]
pub struct PromptVars<'a> {
    pub question: Option<&'a str>,
    pub camera: Option<&'a str>,
    pub choices: Option<&'a [String]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    Unknown {
        name: String,
        known: Vec<String>,
    },
    Placeholder {
        name: String,
        placeholder: String,
    },
    Unbalanced {
        name: String,
    },
    Missing {
        name: String,
        placeholder: &'static str,
    },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown { name, known } => write!(
                f,
                "unknown template {name:?} (known: {})",
                known.join(", ")
            ),
            Self::Placeholder { name, placeholder } => write!(
                f,
                "unknown placeholder {{{placeholder}}} in template {name:?}; templates may use {{question}}, {{camera}} and {{choices}} ({{{{ and }}}} for literal braces)"
            ),
            Self::Unbalanced { name } => write!(
                f,
                "template {name:?}: a lone {{ or }} (write {{{{ or }}}} for a literal brace)"
            ),
            Self::Missing { name, placeholder } => {
                write!(f, "template {name:?} needs a {placeholder}, and none was given")
            }
        }
    }
}

impl std::error::Error for TemplateError {}

/// One piece of a parsed template.
enum Piece<'a> {
    Text(&'a str),
    Brace(char),
    Var(&'a str),
}

fn parse<'a>(name: &str, text: &'a str) -> Result<Vec<Piece<'a>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        pieces.push(Piece::Text(&rest[..i]));
        let c = rest.as_bytes()[i] as char;
        let after = &rest[i + 1..];
        if after.starts_with(c) {
            pieces.push(Piece::Brace(c));
            rest = &after[1..];
        } else if c == '{' {
            let end = after.find('}').ok_or(TemplateError::Unbalanced {
                name: name.to_string(),
            })?;
            let var = &after[..end];
            if !matches!(var, "question" | "camera" | "choices") {
                return Err(TemplateError::Placeholder {
                    name: name.to_string(),
                    placeholder: var.to_string(),
                });
            }
            pieces.push(Piece::Var(var));
            rest = &after[end + 1..];
        } else {
            return Err(TemplateError::Unbalanced {
                name: name.to_string(),
            });
        }
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

/// Named templates: the built-in ones plus any the config adds.
#[derive(Debug, Clone)]
pub struct Templates {
    by_name: BTreeMap<String, String>,
}

impl Default for Templates {
    fn default() -> Self {
        Self {
            by_name: BUILTIN
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
        }
    }
}

impl Templates {
    /// Adds or replaces a template after checking its placeholders.
    pub fn insert(&mut self, name: &str, text: &str) -> Result<(), TemplateError> {
        parse(name, text)?;
        self.by_name.insert(name.to_string(), text.to_string());
        Ok(())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Result<&str, TemplateError> {
        self.by_name
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| TemplateError::Unknown {
                name: name.to_string(),
                known: self.by_name.keys().cloned().collect(),
            })
    }

    /// The prompt text of template `name` with `vars` filled in.
    pub fn render(&self, name: &str, vars: &PromptVars) -> Result<String, TemplateError> {
        render(name, self.get(name)?, vars)
    }
}

/// Fills in one template text.
pub fn render(name: &str, text: &str, vars: &PromptVars) -> Result<String, TemplateError> {
    let missing = |placeholder| TemplateError::Missing {
        name: name.to_string(),
        placeholder,
    };
    let mut out = String::with_capacity(text.len() + 32);
    for piece in parse(name, text)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Brace(c) => out.push(c),
            Piece::Var("question") => out.push_str(vars.question.ok_or(missing("question"))?),
            Piece::Var("camera") => out.push_str(vars.camera.ok_or(missing("camera"))?),
            Piece::Var(_) => out.push_str(&vars.choices.ok_or(missing("choices"))?.join(", ")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_vqa_template_is_the_contracts() {
        let t = Templates::default();
        let vars = PromptVars {
            question: Some("how many cats?"),
            ..Default::default()
        };
        assert_eq!(
            t.render(DEFAULT_VQA, &vars).unwrap(),
            "Question: how many cats? Answer:"
        );
    }

    #[test]
    fn choices_camera_and_braces_render() {
        let mut t = Templates::default();
        t.insert(
            "fewshot",
            "Q: is it sunny? A: yes\n{{{camera}}} Q: {question} ({choices}) A:",
        )
        .unwrap();
        let choices = vec!["正面".to_string(), "负面".to_string(), "中性".to_string()];
        let vars = PromptVars {
            question: Some("情感?"),
            camera: Some("door"),
            choices: Some(&choices),
        };
        assert_eq!(
            t.render("fewshot", &vars).unwrap(),
            "Q: is it sunny? A: yes\n{door} Q: 情感? (正面, 负面, 中性) A:"
        );
    }

    #[test]
    fn bad_templates_and_missing_values_are_named() {
        let mut t = Templates::default();
        let e = t.insert("x", "Q: {questoin}").unwrap_err();
        assert!(e.to_string().contains("{questoin}"), "{e}");
        assert!(matches!(
            t.insert("y", "a } b"),
            Err(TemplateError::Unbalanced { .. })
        ));
        let e = t.render("vqa", &PromptVars::default()).unwrap_err();
        assert!(e.to_string().contains("needs a question"), "{e}");
        let e = t.render("nope", &PromptVars::default()).unwrap_err();
        assert!(e.to_string().contains("known: "), "{e}");
    }
}
