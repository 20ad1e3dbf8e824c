//! The panel preview: what the panel would show, written as a PNG when no panel is attached.

use std::path::{Path, PathBuf};

use ember_display::framebuffer::Mono128x64;
use ember_display::overview::{self, Overview};
use ember_wire::{HostId, Sample};

/// Pixels per panel pixel in the PNG, so that a 128x64 panel is readable on a screen.
const SCALE: u32 = 4;

/// Writes the overview screen to a PNG file after each sample.
#[derive(Debug, Clone)]
pub struct Preview {
    path: PathBuf,
    ip: Option<[u8; 4]>,
    failed: bool,
}

impl Preview {
    /// A preview written to `path`.
    pub fn new(path: PathBuf) -> Self {
        Preview {
            path,
            ip: None,
            failed: false,
        }
    }

    /// Where the preview goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The address shown on the panel.
    pub fn set_ip(&mut self, ip: Option<[u8; 4]>) {
        self.ip = ip;
    }

    /// Renders `sample` and replaces the file (written aside, then renamed, so a reader never
    /// sees half a PNG). Failures are logged once, never fatal: the agent keeps publishing.
    pub fn update(&mut self, host: &HostId, sample: &Sample) {
        let mut fb = Mono128x64::new();
        let model = Overview::from_sample(host.as_str(), self.ip, sample);
        // Drawing into a framebuffer cannot fail.
        let _ = overview::draw(&model, &mut fb);
        let tmp = self.path.with_extension("png.tmp");
        let result = ember_display::png::write_png(&tmp, &fb, SCALE)
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        match result {
            Ok(()) if self.failed => {
                log::info!("panel preview written again to {}", self.path.display());
                self.failed = false;
            }
            Ok(()) => {}
            Err(e) if !self.failed => {
                log::warn!(
                    "cannot write the panel preview {}: {e}",
                    self.path.display()
                );
                self.failed = true;
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_and_survives_an_unwritable_path() {
        let dir = std::env::temp_dir().join(format!("ember-preview-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("panel.png");
        let mut p = Preview::new(path.clone());
        p.set_ip(Some([192, 168, 1, 40]));
        let host = HostId::new("pi").unwrap();
        p.update(&host, &Sample::default());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(!p.failed);

        let mut bad = Preview::new(dir.join("missing-dir/panel.png"));
        bad.update(&host, &Sample::default());
        assert!(bad.failed);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
