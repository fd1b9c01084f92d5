//! BLIP-2 with the image processor of its directory: what `landfall caption`/`ask` and the
//! daemon's captioner both load, so an image goes through the same resize, normalization and
//! model everywhere.

use std::path::Path;

use candle_core::Tensor;
use image::RgbImage;

use crate::imaging::ImageProcessorConfig;
use crate::models::ModelError;

use super::model::{Blip2, Blip2LoadOptions, ImageFeatures};

pub struct Captioner {
    pub model: Blip2,
    processor: ImageProcessorConfig,
}

impl Captioner {
    /// Loads the model and its image processor, and checks that the processor's output size is
    /// what the vision encoder takes.
    pub fn load(dir: &Path, opts: &Blip2LoadOptions) -> Result<Self, ModelError> {
        let processor = ImageProcessorConfig::from_model_dir(dir)
            .map_err(|e| ModelError::Usage(e.to_string()))?;
        let model = Blip2::load(dir, opts)?;
        let size = model.image_size();
        if processor.image_size() != (size, size) {
            return Err(ModelError::Usage(format!(
                "{}: the image processor resizes to {:?}, but the vision model takes {size}x{size}",
                dir.display(),
                processor.image_size()
            )));
        }
        Ok(Self { model, processor })
    }

    /// The image resized and normalized for the vision encoder, `[1, 3, S, S]`.
    pub fn pixel_values(&self, image: &RgbImage) -> Result<Tensor, ModelError> {
        self.processor
            .to_tensor(image, self.model.device())
            .map_err(|e| ModelError::Inference(candle_core::Error::Msg(e.to_string())))
    }

    /// Pixel values, vision encoder, Q-Former and projection for one image.
    pub fn features(&self, image: &RgbImage) -> Result<ImageFeatures, ModelError> {
        self.model.image_features(&self.pixel_values(image)?)
    }

    /// The same for several images as one batch through the vision encoder and Q-Former: 257
    /// patch tokens per image keep those matmuls compute-bound, and a batch reads each weight
    /// once for all of its images. One result per image, in order.
    pub fn features_batch(&self, images: &[&RgbImage]) -> Result<Vec<ImageFeatures>, ModelError> {
        let pixels = images
            .iter()
            .map(|image| self.pixel_values(image))
            .collect::<Result<Vec<_>, _>>()?;
        let batch = Tensor::cat(&pixels, 0)?;
        self.model.image_features(&batch)?.split()
    }
}
