//! What a `[[camera]]` entry names: the `source` string (`v4l2:/dev/video0`, `file:PATH`,
//! `dir:PATH`, `pattern:NAME`), a resolution (`1280x720`) and a V4L2 pixel format. Parsed while
//! the config is validated, so a typo is reported with its line instead of at capture time.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::util::InvalidValue;
use std::time::Duration;

/// The generated test patterns `pattern:` accepts.
pub const PATTERNS: &[&str] = &["bars"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A V4L2 device, by its `/dev/videoN` index.
    V4l2 { path: PathBuf, index: u32 },
    /// One image file, read again when it changes.
    File(PathBuf),
    /// The images of a folder in name order, looping.
    Dir(PathBuf),
    /// A generated test pattern.
    Pattern(String),
}

impl FromStr for SourceSpec {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let (kind, rest) = s.split_once(':').ok_or_else(|| {
            format!("{s:?}: expected \"v4l2:/dev/videoN\", \"file:PATH\", \"dir:PATH\" or \"pattern:bars\"")
        })?;
        if rest.is_empty() {
            return Err(InvalidValue(format!("{s:?}: nothing after \"{kind}:\"")));
        }
        match kind {
            "v4l2" => {
                let index = rest
                    .strip_prefix("/dev/video")
                    .and_then(|n| n.parse::<u32>().ok())
                    .ok_or_else(|| {
                        format!("{s:?}: a V4L2 source is a device node like \"v4l2:/dev/video0\"")
                    })?;
                Ok(Self::V4l2 {
                    path: PathBuf::from(rest),
                    index,
                })
            }
            "file" => Ok(Self::File(PathBuf::from(rest))),
            "dir" => Ok(Self::Dir(PathBuf::from(rest))),
            "pattern" if PATTERNS.contains(&rest) => Ok(Self::Pattern(rest.to_string())),
            "pattern" => Err(InvalidValue(format!(
                "{s:?}: unknown test pattern; this build has {PATTERNS:?}"
            ))),
            other => Err(InvalidValue(format!(
                "{s:?}: unknown source kind {other:?}; expected v4l2, file, dir or pattern"
            ))),
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::V4l2 { path, .. } => write!(f, "v4l2:{}", path.display()),
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Dir(p) => write!(f, "dir:{}", p.display()),
            Self::Pattern(n) => write!(f, "pattern:{n}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    pub width: u32,
    pub height: u32,
}

impl FromStr for Resolution {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let parsed = s.split_once(['x', 'X']).and_then(|(w, h)| {
            let w = w.trim().parse::<u32>().ok()?;
            let h = h.trim().parse::<u32>().ok()?;
            (w > 0 && h > 0 && w <= 16384 && h <= 16384).then_some(Self {
                width: w,
                height: h,
            })
        });
        parsed.ok_or_else(|| {
            InvalidValue(format!(
                "{s:?}: expected WIDTHxHEIGHT like \"1280x720\" (each 1 to 16384)"
            ))
        })
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// The V4L2 pixel formats nokhwa can decode to RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Mjpeg,
    Yuyv,
    Nv12,
    Gray,
    Rgb,
}

impl FromStr for PixelFormat {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s.to_ascii_lowercase().as_str() {
            "mjpeg" | "mjpg" => Ok(Self::Mjpeg),
            "yuyv" => Ok(Self::Yuyv),
            "nv12" => Ok(Self::Nv12),
            "gray" | "grey" => Ok(Self::Gray),
            "rgb" | "rgb24" => Ok(Self::Rgb),
            _ => Err(InvalidValue(format!(
                "{s:?}: expected \"mjpeg\", \"yuyv\", \"nv12\", \"gray\" or \"rgb\""
            ))),
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Self::Mjpeg => "mjpeg",
            Self::Yuyv => "yuyv",
            Self::Nv12 => "nv12",
            Self::Gray => "gray",
            Self::Rgb => "rgb",
        })
    }
}

#[derive(Debug, Clone)]
/// One `[[camera]]` of the config, validated.
pub struct CameraConfig {
    pub name: String,
    pub source: SourceSpec,
    /// Frames captured per second.
    pub fps: f64,
    /// V4L2 capture size (the closest the device offers) and the test pattern's size; `None`:
    /// 640x480 for V4L2, 320x240 for the pattern.
    pub resolution: Option<Resolution>,
    /// V4L2 only; `None`: MJPEG if the device offers it, else YUYV, else any.
    pub pixel_format: Option<PixelFormat>,
    /// How often the camera is captioned; `None`: never (frames still serve VQA requests).
    pub interval: Option<Duration>,
    /// Caption only when the picture changed by at least `scene_threshold` since the last caption.
    pub caption_on_change: bool,
    /// Mean absolute difference of downscaled grey frames, 0 to 1.
    pub scene_threshold: f64,
    /// This camera's caption prompt; `None`: the captioner's.
    pub prompt: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_print_back() {
        for s in [
            "v4l2:/dev/video2",
            "file:/tmp/a.jpg",
            "dir:frames",
            "pattern:bars",
        ] {
            assert_eq!(s.parse::<SourceSpec>().unwrap().to_string(), s);
        }
        for bad in [
            "video0",
            "v4l2:/dev/sda",
            "file:",
            "pattern:nope",
            "rtsp://cam",
        ] {
            assert!(bad.parse::<SourceSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn resolutions_and_formats() {
        assert_eq!(
            "640x480".parse::<Resolution>().unwrap(),
            Resolution {
                width: 640,
                height: 480
            }
        );
        assert!("640".parse::<Resolution>().is_err());
        assert!("0x480".parse::<Resolution>().is_err());
        assert_eq!("MJPG".parse::<PixelFormat>().unwrap(), PixelFormat::Mjpeg);
        assert!("h264".parse::<PixelFormat>().is_err());
    }
}
