//! `file:` and `dir:` sources: images from disk, decoded to RGB.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use image::RgbImage;

use super::decode::decode_image;
use super::error::CaptureError;

/// Extensions a `dir:` camera picks up (case-insensitive).
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp"];

fn read_image(path: &Path) -> Result<RgbImage, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    decode_image(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// One image, decoded again only when its modification time changes; frames share it.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    modified: Option<SystemTime>,
    image: Arc<RgbImage>,
}

impl FileSource {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let modified = modified(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            modified,
            image: Arc::new(read_image(path)?),
        })
    }

    pub fn grab(&mut self) -> Result<Arc<RgbImage>, CaptureError> {
        let now = modified(&self.path)?;
        if now != self.modified {
            self.image = Arc::new(read_image(&self.path)?);
            self.modified = now;
        }
        Ok(self.image.clone())
    }
}

fn modified(path: &Path) -> Result<Option<SystemTime>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a file", path.display()));
    }
    Ok(meta.modified().ok())
}

/// The images of a folder in name order, looping; the folder is listed again at each lap, so
/// images added or removed take effect on the next one.
#[derive(Debug)]
pub struct DirSource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
}

impl DirSource {
    pub fn open(dir: &Path) -> Result<Self, CaptureError> {
        let files = list(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            next: 0,
        })
    }

    /// The next image; one that cannot be read is skipped (and named in the log), so a single
    /// bad file does not stall the camera. Fails only when a whole lap yields nothing.
    pub fn grab(&mut self) -> Result<RgbImage, CaptureError> {
        let mut last_error = None;
        for _ in 0..=self.files.len() {
            if self.next >= self.files.len() {
                self.files = list(&self.dir)?;
                self.next = 0;
            }
            let path = self.files[self.next].clone();
            self.next += 1;
            match read_image(&path) {
                Ok(image) => return Ok(image),
                Err(e) => {
                    tracing::debug!("camera dir: skipping {e}");
                    last_error = Some(e);
                }
            }
        }
        Err(CaptureError(last_error.unwrap_or_else(|| {
            format!("{}: no readable images", self.dir.display())
        })))
    }
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "{}: no images ({}) in this folder",
            dir.display(),
            IMAGE_EXTENSIONS.join(", ")
        ));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn write(dir: &Path, name: &str, v: u8) {
        RgbImage::from_pixel(4, 4, Rgb([v, v, v]))
            .save(dir.join(name))
            .unwrap();
    }

    #[test]
    fn a_dir_loops_in_name_order_and_skips_bad_files() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "b.png", 2);
        write(d.path(), "a.png", 1);
        std::fs::write(d.path().join("c.jpg"), b"not a jpeg").unwrap();
        std::fs::write(d.path().join("notes.txt"), b"ignored").unwrap();
        let mut s = DirSource::open(d.path()).unwrap();
        let got: Vec<u8> = (0..4)
            .map(|_| s.grab().unwrap().get_pixel(0, 0).0[0])
            .collect();
        assert_eq!(got, vec![1, 2, 1, 2]);
    }

    #[test]
    fn missing_or_empty_folders_and_files_are_errors() {
        let d = tempfile::tempdir().unwrap();
        assert!(DirSource::open(d.path())
            .unwrap_err()
            .0
            .contains("no images"));
        assert!(DirSource::open(&d.path().join("gone")).is_err());
        assert!(FileSource::open(&d.path().join("gone.png")).is_err());
    }

    #[test]
    fn a_file_is_read_again_when_it_changes() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "f.png", 10);
        let path = d.path().join("f.png");
        let mut s = FileSource::open(&path).unwrap();
        assert_eq!(s.grab().unwrap().get_pixel(0, 0).0[0], 10);
        write(d.path(), "f.png", 20);
        // Make the change visible even on filesystems with coarse timestamps.
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(s.grab().unwrap().get_pixel(0, 0).0[0], 20);
    }
}
