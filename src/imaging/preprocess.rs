//! `preprocessor_config.json` (BlipImageProcessor) and RGB image → `pixel_values` [1, 3, H, W].
//!
//! The reference is transformers 5's PIL backend (`BlipImageProcessorPil`, what
//! `AutoImageProcessor`/`Blip2Processor` pick when torchvision is not installed): Pillow resize,
//! then `rescale` in float64 cast to float32, then `normalize` in float32. Each step is
//! reproduced with the same float widths, so the values are bit-identical.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde_json::Value;

use super::error::ImageError;
use super::resample::{resize, Filter};

const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// How the processor sizes its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTarget {
    /// `size: {height, width}` or `size: N` (BLIP squares an int).
    Exact { height: u32, width: u32 },
    /// `size: {shortest_edge: N}`: the short side becomes N, the long side keeps the aspect.
    ShortestEdge(u32),
}

/// The fields of a BlipImageProcessor config that change pixel values; absent fields take
/// BlipImageProcessor's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessorConfig {
    pub do_resize: bool,
    pub size: ResizeTarget,
    pub resample: Filter,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
    /// Always honoured in effect: every decoded image is RGB already (see `decode`).
    pub do_convert_rgb: bool,
}

impl Default for ImageProcessorConfig {
    /// BlipImageProcessor's class defaults (transformers 5).
    fn default() -> Self {
        Self {
            do_resize: true,
            size: ResizeTarget::Exact {
                height: 384,
                width: 384,
            },
            resample: Filter::Bicubic,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: CLIP_MEAN,
            image_std: CLIP_STD,
            do_convert_rgb: true,
        }
    }
}

impl ImageProcessorConfig {
    /// Reads `<dir>/preprocessor_config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, ImageError> {
        Self::from_file(&dir.join("preprocessor_config.json"))
    }

    /// The image processor settings of a model directory: `preprocessor_config.json` (the hub's
    /// older layout), or the `image_processor` object of the `processor_config.json` that
    /// transformers 5 writes.
    pub fn from_model_dir(dir: &Path) -> Result<Self, ImageError> {
        let legacy = dir.join("preprocessor_config.json");
        let path = dir.join("processor_config.json");
        if legacy.is_file() || !path.is_file() {
            return Self::from_file(&legacy);
        }
        let err = |detail: String| ImageError::Config {
            path: path.clone(),
            detail,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| err(format!("cannot read: {e}")))?;
        let json: Value =
            serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let image = json
            .get("image_processor")
            .ok_or_else(|| err("has no \"image_processor\" settings".into()))?;
        Self::from_json(image, &path)
    }

    /// Reads a preprocessor config file.
    pub fn from_file(path: &Path) -> Result<Self, ImageError> {
        let err = |detail: String| ImageError::Config {
            path: path.to_path_buf(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let json: Value =
            serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        Self::from_json(&json, path)
    }

    /// Parses a config already read; `path` only names it in errors.
    pub fn from_json(json: &Value, path: &Path) -> Result<Self, ImageError> {
        let p = Parser {
            path: path.to_path_buf(),
        };
        let obj = json
            .as_object()
            .ok_or_else(|| p.err("expected a JSON object"))?;
        let mut cfg = Self::default();
        if let Some(v) = obj.get("do_resize") {
            cfg.do_resize = p.bool("do_resize", v)?;
        }
        if let Some(v) = obj.get("size") {
            cfg.size = p.size(v)?;
        }
        if let Some(v) = obj.get("resample") {
            let n = v
                .as_i64()
                .ok_or_else(|| p.err(format!("\"resample\" must be an integer, got {v}")))?;
            cfg.resample = Filter::from_pil(n).ok_or_else(|| {
                p.err(format!(
                    "\"resample\": {n} is not supported (1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING are)"
                ))
            })?;
        }
        if let Some(v) = obj.get("do_rescale") {
            cfg.do_rescale = p.bool("do_rescale", v)?;
        }
        if let Some(v) = obj.get("rescale_factor") {
            cfg.rescale_factor = v
                .as_f64()
                .ok_or_else(|| p.err(format!("\"rescale_factor\" must be a number, got {v}")))?;
        }
        if let Some(v) = obj.get("do_normalize") {
            cfg.do_normalize = p.bool("do_normalize", v)?;
        }
        if let Some(v) = obj.get("image_mean") {
            cfg.image_mean = p.triple("image_mean", v)?;
        }
        if let Some(v) = obj.get("image_std") {
            cfg.image_std = p.triple("image_std", v)?;
            if cfg.image_std.contains(&0.0) {
                return Err(p.err("\"image_std\" has a zero: normalizing would divide by zero"));
            }
        }
        if let Some(v) = obj.get("do_convert_rgb") {
            cfg.do_convert_rgb = p.bool("do_convert_rgb", v)?;
        }
        // Steps BLIP never uses but a config could switch on: refuse rather than skip them.
        for key in ["do_center_crop", "do_pad"] {
            if let Some(v) = obj.get(key) {
                if p.bool(key, v)? {
                    return Err(p.err(format!(
                        "\"{key}\": true is not supported (BLIP processors do not crop or pad)"
                    )));
                }
            }
        }
        Ok(cfg)
    }

    /// The (height, width) the vision model expects; for `shortest_edge` configs, N×N.
    pub fn image_size(&self) -> (usize, usize) {
        match self.size {
            ResizeTarget::Exact { height, width } => (height as usize, width as usize),
            ResizeTarget::ShortestEdge(n) => (n as usize, n as usize),
        }
    }

    /// The (height, width) an image of this size is resized to.
    pub fn output_size(&self, width: u32, height: u32) -> (u32, u32) {
        if !self.do_resize {
            return (height, width);
        }
        match self.size {
            ResizeTarget::Exact { height, width } => (height, width),
            ResizeTarget::ShortestEdge(n) => {
                // transformers' get_resize_output_image_size: int(n * long / short) in float64.
                let (short, long) = if width <= height {
                    (width, height)
                } else {
                    (height, width)
                };
                let new_long = (f64::from(n) * f64::from(long) / f64::from(short)) as u32;
                if width <= height {
                    (new_long, n)
                } else {
                    (n, new_long)
                }
            }
        }
    }

    /// Resizes (as Pillow does) and returns the model-ready u8 image.
    pub fn resize(&self, img: &RgbImage) -> RgbImage {
        let (h, w) = self.output_size(img.width(), img.height());
        resize(img, w, h, self.resample)
    }

    /// `pixel_values` for one image: f32 [1, 3, H, W] on `device`.
    pub fn to_tensor(&self, img: &RgbImage, device: &Device) -> Result<Tensor, ImageError> {
        let resized = self.resize(img);
        let (w, h) = (resized.width() as usize, resized.height() as usize);
        let luts = self.value_tables();
        let plane = w * h;
        let mut data = vec![0f32; 3 * plane];
        for (i, px) in resized.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * plane + i] = luts[c][px[c] as usize];
            }
        }
        Ok(Tensor::from_vec(data, (1, 3, h, w), device)?)
    }

    /// The float each u8 value becomes, per channel: there are only 256, so the rescale and
    /// normalize arithmetic runs 768 times instead of per pixel.
    fn value_tables(&self) -> [[f32; 256]; 3] {
        let mut luts = [[0f32; 256]; 3];
        for (c, lut) in luts.iter_mut().enumerate() {
            for (v, out) in lut.iter_mut().enumerate() {
                // transformers: image.astype(float64) * scale, then .astype(float32).
                let mut x = if self.do_rescale {
                    (v as f64 * self.rescale_factor) as f32
                } else {
                    v as f32
                };
                if self.do_normalize {
                    // np.array(mean, dtype=float32); (image - mean) / std in float32.
                    x = (x - self.image_mean[c] as f32) / self.image_std[c] as f32;
                }
                *out = x;
            }
        }
        luts
    }
}

struct Parser {
    path: PathBuf,
}

impl Parser {
    fn err(&self, detail: impl Into<String>) -> ImageError {
        ImageError::Config {
            path: self.path.clone(),
            detail: detail.into(),
        }
    }

    fn bool(&self, key: &str, v: &Value) -> Result<bool, ImageError> {
        v.as_bool()
            .ok_or_else(|| self.err(format!("\"{key}\" must be true or false, got {v}")))
    }

    fn dim(&self, key: &str, v: &Value) -> Result<u32, ImageError> {
        v.as_u64()
            .filter(|&n| (1..=65535).contains(&n))
            .map(|n| n as u32)
            .ok_or_else(|| {
                self.err(format!(
                    "\"{key}\" must be an integer from 1 to 65535, got {v}"
                ))
            })
    }

    fn size(&self, v: &Value) -> Result<ResizeTarget, ImageError> {
        if v.is_number() {
            // BLIP sets default_to_square: an int means N×N.
            let n = self.dim("size", v)?;
            return Ok(ResizeTarget::Exact {
                height: n,
                width: n,
            });
        }
        let obj = v.as_object().ok_or_else(|| {
            self.err(format!("\"size\" must be an integer or an object, got {v}"))
        })?;
        let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
        match (
            get("height"),
            get("width"),
            get("shortest_edge"),
            get("longest_edge"),
        ) {
            (Some(h), Some(w), None, None) => Ok(ResizeTarget::Exact {
                height: self.dim("size.height", h)?,
                width: self.dim("size.width", w)?,
            }),
            (None, None, Some(s), None) => Ok(ResizeTarget::ShortestEdge(
                self.dim("size.shortest_edge", s)?,
            )),
            _ => Err(self.err(format!(
                "\"size\" must be {{\"height\", \"width\"}} or {{\"shortest_edge\"}}, got {v}"
            ))),
        }
    }

    fn triple(&self, key: &str, v: &Value) -> Result<[f64; 3], ImageError> {
        let bad = || {
            self.err(format!(
                "\"{key}\" must be a number or a list of 3 numbers, got {v}"
            ))
        };
        if let Some(x) = v.as_f64() {
            return Ok([x; 3]);
        }
        let items = v.as_array().filter(|a| a.len() == 3).ok_or_else(bad)?;
        let mut out = [0.0; 3];
        for (o, item) in out.iter_mut().zip(items) {
            *o = item.as_f64().ok_or_else(bad)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ImageProcessorConfig, ImageError> {
        ImageProcessorConfig::from_json(&v, Path::new("cfg.json"))
    }

    #[test]
    fn absent_fields_take_blip_defaults_and_int_size_is_square() {
        let cfg = parse(json!({"size": 224})).unwrap();
        assert_eq!(
            cfg.size,
            ResizeTarget::Exact {
                height: 224,
                width: 224
            }
        );
        assert_eq!(cfg.image_size(), (224, 224));
        assert_eq!(cfg.resample, Filter::Bicubic);
        assert_eq!(cfg.image_mean, CLIP_MEAN);
        assert!(cfg.do_rescale && cfg.do_normalize && cfg.do_resize);
        assert_eq!(parse(json!({})).unwrap().image_size(), (384, 384));
    }

    #[test]
    fn shortest_edge_keeps_the_aspect_like_transformers() {
        let cfg = parse(json!({"size": {"shortest_edge": 224}})).unwrap();
        // int(224 * 1920 / 1080) = 398
        assert_eq!(cfg.output_size(1920, 1080), (224, 398));
        assert_eq!(cfg.output_size(1080, 1920), (398, 224));
        assert_eq!(cfg.output_size(50, 50), (224, 224));
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (json!({"resample": 0}), "\"resample\": 0 is not supported"),
            (json!({"resample": 9}), "\"resample\": 9 is not supported"),
            (
                json!({"resample": "bicubic"}),
                "\"resample\" must be an integer",
            ),
            (json!({"size": {"max_height": 3}}), "\"size\" must be"),
            (json!({"size": 0}), "\"size\" must be an integer from 1"),
            (json!({"size": {"height": 224}}), "\"size\" must be"),
            (json!({"image_mean": [0.5, 0.5]}), "\"image_mean\" must be"),
            (json!({"image_std": [0.5, 0.0, 0.5]}), "zero"),
            (
                json!({"do_resize": "yes"}),
                "\"do_resize\" must be true or false",
            ),
            (
                json!({"do_center_crop": true}),
                "\"do_center_crop\": true is not supported",
            ),
            (json!([1, 2]), "expected a JSON object"),
        ];
        for (v, want) in cases {
            let msg = parse(v.clone()).unwrap_err().to_string();
            assert!(
                msg.starts_with("cfg.json: ") && msg.contains(want),
                "{v}: {msg}"
            );
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn values_follow_rescale_then_normalize_in_f32() {
        let cfg = ImageProcessorConfig {
            do_resize: false,
            ..Default::default()
        };
        let img = RgbImage::from_raw(2, 1, vec![0, 128, 255, 255, 0, 7]).unwrap();
        let t = cfg.to_tensor(&img, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[1, 3, 1, 2]);
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let expect = |x: u8, c: usize| {
            ((f64::from(x) * (1.0 / 255.0)) as f32 - CLIP_MEAN[c] as f32) / CLIP_STD[c] as f32
        };
        assert_eq!(
            v,
            vec![
                expect(0, 0),
                expect(255, 0),
                expect(128, 1),
                expect(0, 1),
                expect(255, 2),
                expect(7, 2)
            ]
        );
    }
}
