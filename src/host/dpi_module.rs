//! The server's DPI module: it reads the vswitch's mirror port (frames of the pairs the
//! controller mirrors) into a [`DpiEngine`] and publishes the engine's labels to the host link
//! whenever they change, checking every [`DPI_TICK`], and at once when asked.
//!
//! It owns the engine and its task; what is mirrored is the vswitch's business and where the
//! labels go the host link's.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dpi::{DpiConfig, DpiEngine};

use super::{LabelPublisher, MirroredFrame, RunningHost};

/// How often the labels are compared with the ones published last.
pub const DPI_TICK: Duration = Duration::from_millis(500);

/// A running DPI module; [`DpiModule::stop`] ends it.
pub struct DpiModule {
    publish: mpsc::Sender<()>,
    task: JoinHandle<()>,
}

impl DpiModule {
    /// Starts DPI on the host's mirror port; `None` when the mirror port was already taken.
    pub fn start(host: &RunningHost) -> Option<DpiModule> {
        let frames = host.mirror_frames()?;
        let (publish, publish_rx) = mpsc::channel(4);
        let task = tokio::spawn(run(frames, host.label_publisher(), publish_rx));
        Some(DpiModule { publish, task })
    }

    /// Inspects every frame mirrored so far and publishes the labels now.
    pub fn publish_now(&self) {
        let _ = self.publish.try_send(());
    }

    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn run(
    mut frames: mpsc::Receiver<MirroredFrame>,
    publisher: LabelPublisher,
    mut publish_rx: mpsc::Receiver<()>,
) {
    let mut engine = DpiEngine::new(DpiConfig::default());
    let mut tick = tokio::time::interval(DPI_TICK);
    let mut published = Vec::new();
    loop {
        let forced = tokio::select! {
            frame = frames.recv() => match frame {
                // Malformed frames are counted in the engine's stats.
                Some(f) => { let _ = engine.observe(f.at, &f.frame); continue; }
                None => return,
            },
            _ = tick.tick() => false,
            _ = publish_rx.recv() => true,
        };
        // Labels from every frame mirrored by now, not only those the select took.
        while let Ok(f) = frames.try_recv() {
            let _ = engine.observe(f.at, &f.frame);
        }
        let labels = engine.labels();
        if forced || labels != published {
            publisher.publish(labels.clone());
            published = labels;
        }
    }
}
