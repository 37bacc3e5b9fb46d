//! `loc-eval serve`: a local page to try a checkpoint. The page uploads `A`, `A'` and `B`, and
//! asks for `B'` at a strength; the LoRA of a pair is generated once and reused for every
//! strength and query.
//!
//! The HTTP server (axum) runs on its own thread; the model stays on the calling thread, which
//! takes one job at a time from a queue, so edits never run side by side and the model needs no
//! lock. A job that panics answers its request with an error and the server keeps serving.

use std::collections::VecDeque;
use std::io::Cursor;
use std::net::TcpListener;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use burn::prelude::*;
use image::{ImageFormat, RgbImage};
use loc_core::checkpoint::LocModel;
use loc_core::lora::{ExportOptions, LoraFormat, LoraSet, lora_file_bytes};
use loc_core::pipeline::{EditOptions, Sampling};
use loc_data::pipeline::{ImageLimits, QueryLayout, decode_rgb};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::editing::{edit_query, pair_lora, query_layout};

/// The page: plain HTML and JavaScript, no build step.
const PAGE: &str = include_str!("serve.html");
/// Uploaded images held for edits (the oldest unused one goes first).
const HELD_IMAGES: usize = 24;
/// Generated LoRAs held for reuse, one per pair.
const HELD_LORAS: usize = 16;

/// What `serve` listens on and accepts.
#[derive(Debug)]
pub struct ServeOptions {
    pub listener: TcpListener,
    /// The largest upload, in bytes (413 past it).
    pub max_upload_bytes: usize,
    /// Images whose header claims more pixels are refused before decoding (decompression bombs).
    pub limits: ImageLimits,
    /// The page's initial sampling settings.
    pub defaults: EditDefaults,
}

/// The sampling settings the page starts from (the command line's `--steps` and so on).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct EditDefaults {
    pub steps: usize,
    pub guidance: f32,
    pub image_guidance: f32,
    pub seed: u64,
}

/// Serves `model` until the server fails; `checkpoint` names it on the page.
pub fn serve(model: LocModel, device: Device, checkpoint: &str, options: ServeOptions) -> anyhow::Result<()> {
    let address = options.listener.local_addr().context("the listening socket")?;
    options.listener.set_nonblocking(true).context("the listening socket")?;
    let (jobs, queue) = mpsc::channel::<Job>();
    let info = Info {
        checkpoint: checkpoint.to_string(),
        resolution: model.manifest.resolution,
        step: model.manifest.step,
        max_upload_bytes: options.max_upload_bytes,
        max_side: options.limits.max_width,
        defaults: options.defaults,
    };
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/info", get(info_handler))
        .route("/api/image", post(upload_handler))
        .route("/api/edit", get(edit_handler))
        .route("/api/lora", get(lora_handler))
        .layer(DefaultBodyLimit::max(read_limit(options.max_upload_bytes)))
        .with_state(AppState { jobs, info });
    let listener = options.listener;
    let server = std::thread::spawn(move || -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(listener, app).await
        })?;
        Ok(())
    });
    eprintln!("serving {checkpoint} on http://{address}/ (Ctrl-C stops)");

    let mut worker = Worker::new(model, device, options.limits);
    // Ends when the server thread ends and drops the queue's sender.
    for job in queue {
        if catch_unwind(AssertUnwindSafe(|| job(&mut worker))).is_err() {
            eprintln!("a request failed (above); serving on");
        }
    }
    server.join().map_err(|_| anyhow::anyhow!("the server thread panicked"))?.context("the HTTP server")
}

/// The model's side: uploads, generated LoRAs and edits, one job at a time.
struct Worker {
    model: LocModel,
    device: Device,
    layout: QueryLayout,
    limits: ImageLimits,
    images: Recent<u64, RgbImage>,
    loras: Recent<(u64, u64), LoraSet>,
    next_image: u64,
    counts: Counts,
}

/// What the worker has done: how often `H` ran tells whether a LoRA was reused.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Counts {
    uploads: u64,
    hypernet_runs: u64,
    edits: u64,
}

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

impl Worker {
    fn new(model: LocModel, device: Device, limits: ImageLimits) -> Self {
        let layout = query_layout(&model.editor, model.manifest.resolution, false);
        Self {
            model,
            device,
            layout,
            limits,
            images: Recent::new(HELD_IMAGES),
            loras: Recent::new(HELD_LORAS),
            next_image: 0,
            counts: Counts::default(),
        }
    }

    fn upload(&mut self, bytes: &[u8]) -> Result<Uploaded, ApiError> {
        let image =
            decode_rgb(bytes, self.limits, "the uploaded file").map_err(|skip| ApiError::bad(skip.to_string()))?;
        let (width, height) = image.dimensions();
        self.next_image += 1;
        self.images.insert(self.next_image, image);
        self.counts.uploads += 1;
        Ok(Uploaded { id: self.next_image, width, height })
    }

    fn image(&mut self, id: u64) -> Result<&RgbImage, ApiError> {
        self.images.get(&id).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("image {id} is no longer held by the server: upload it again"))
        })
    }

    /// `H(A, A')`, generated on first use of the pair; `true` when `H` ran.
    fn lora(&mut self, pair: Pair) -> Result<(LoraSet, bool), ApiError> {
        let key = (pair.before, pair.after);
        if let Some(lora) = self.loras.get(&key) {
            return Ok((lora.clone(), false));
        }
        let (before, after) = (self.image(pair.before)?.clone(), self.image(pair.after)?.clone());
        let lora = pair_lora(&self.model, before, after, &self.device);
        self.counts.hypernet_runs += 1;
        self.loras.insert(key, lora.clone());
        Ok((lora, true))
    }

    fn edit(&mut self, request: EditRequest) -> Result<Edited, ApiError> {
        let options = request.options()?;
        let start = Instant::now();
        let (lora, generated) = self.lora(request.pair())?;
        let lora = lora.scaled(request.strength);
        let query = self.image(request.query)?.clone();
        let edited = edit_query(&self.model, self.layout, &query, &lora, &options, &self.device);
        self.counts.edits += 1;
        let mut png = Vec::new();
        edited
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .map_err(|e| ApiError::internal(format!("encoding the edit: {e}")))?;
        Ok(Edited { png, generated, seconds: start.elapsed().as_secs_f32() })
    }

    /// The pair's LoRA at `strength` as a kohya file, as `export-lora` writes it.
    fn lora_file(&mut self, pair: Pair) -> Result<Vec<u8>, ApiError> {
        let (lora, _) = self.lora(pair)?;
        let options = ExportOptions { strength: pair.strength, ..ExportOptions::new(LoraFormat::Kohya) };
        lora_file_bytes(&lora, &self.model.hypernet.targets, 0, &options).map_err(|e| ApiError::internal(e.to_string()))
    }
}

/// The `capacity` most recently used entries.
struct Recent<K, V> {
    capacity: usize,
    entries: VecDeque<(K, V)>,
}

impl<K: PartialEq, V> Recent<K, V> {
    fn new(capacity: usize) -> Self {
        Self { capacity, entries: VecDeque::with_capacity(capacity) }
    }

    fn get(&mut self, key: &K) -> Option<&V> {
        let index = self.entries.iter().position(|(k, _)| k == key)?;
        let entry = self.entries.remove(index)?;
        self.entries.push_back(entry);
        self.entries.back().map(|(_, value)| value)
    }

    fn insert(&mut self, key: K, value: V) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((key, value));
    }
}

#[derive(Clone)]
struct AppState {
    jobs: mpsc::Sender<Job>,
    info: Info,
}

impl AppState {
    /// Runs `work` on the model's thread, after the jobs queued before it.
    async fn ask<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Worker) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |worker| {
            let _ = reply.send(work(worker));
        });
        self.jobs.send(job).map_err(|_| ApiError::internal("the model's thread has stopped".into()))?;
        // A job that panics drops `reply` unsent.
        answer
            .await
            .map_err(|_| ApiError::internal("the model failed on this request (see the server's log)".into()))?
    }
}

#[derive(Clone, Serialize)]
struct Info {
    checkpoint: String,
    resolution: u32,
    step: u64,
    max_upload_bytes: usize,
    max_side: u32,
    defaults: EditDefaults,
}

#[derive(Serialize)]
struct InfoReply {
    #[serde(flatten)]
    info: Info,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Serialize)]
struct Uploaded {
    id: u64,
    width: u32,
    height: u32,
}

/// A pair's LoRA and its strength, as `/api/edit` and `/api/lora` name them.
#[derive(Clone, Copy, Debug, Deserialize)]
struct Pair {
    before: u64,
    after: u64,
    strength: f32,
}

/// `/api/edit`'s query string. Plain fields: url-encoded numbers do not pass through serde's
/// `flatten`.
#[derive(Debug, Deserialize)]
struct EditRequest {
    before: u64,
    after: u64,
    strength: f32,
    query: u64,
    steps: usize,
    guidance: f32,
    image_guidance: f32,
    seed: u64,
}

impl EditRequest {
    fn pair(&self) -> Pair {
        Pair { before: self.before, after: self.after, strength: self.strength }
    }

    fn options(&self) -> Result<EditOptions, ApiError> {
        if !(1..=1000).contains(&self.steps) {
            return Err(ApiError::bad(format!("steps = {}: give 1 to 1000", self.steps)));
        }
        for (name, value) in
            [("strength", self.strength), ("guidance", self.guidance), ("image_guidance", self.image_guidance)]
        {
            if !value.is_finite() {
                return Err(ApiError::bad(format!("{name} = {value}: give a finite number")));
            }
        }
        let sampling = Sampling {
            steps: self.steps,
            image_guidance: self.image_guidance,
            lora_guidance: Some(self.guidance),
            ..Sampling::default()
        };
        Ok(EditOptions::new(sampling, self.seed))
    }
}

struct Edited {
    png: Vec<u8>,
    generated: bool,
    seconds: f32,
}

/// An answer the page shows: a status and a sentence.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: String) -> Self {
        Self { status, message }
    }

    fn bad(message: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn internal(message: String) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message }).to_string();
        (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

fn json(value: &impl Serialize) -> Response {
    let body = serde_json::to_string(value).expect("plain data serialises");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The query string, or a 400 that says what is wrong with it.
fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(value)| value).map_err(|e| ApiError::bad(e.body_text()))
}

async fn info_handler(State(state): State<AppState>) -> Result<Response, ApiError> {
    let counts = state.ask(|worker| Ok(worker.counts)).await?;
    Ok(json(&InfoReply { info: state.info.clone(), counts }))
}

/// How much of a request body the server reads. An upload somewhat over `--max-upload-mb` is
/// read to its end before the 413, because a server that answers mid-upload closes the
/// connection and the browser then shows a network error instead of the reason.
fn read_limit(max_upload_bytes: usize) -> usize {
    max_upload_bytes.saturating_mul(2).saturating_add(8 << 20)
}

async fn upload_handler(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the file is larger than this server accepts ({} bytes, --max-upload-mb)",
                state.info.max_upload_bytes
            ),
        )
    };
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        status => ApiError::new(status, rejection.body_text()),
    })?;
    if body.len() > state.info.max_upload_bytes {
        return Err(too_large());
    }
    if body.is_empty() {
        return Err(ApiError::bad("the upload is empty".into()));
    }
    let uploaded = state.ask(move |worker| worker.upload(&body)).await?;
    Ok(json(&uploaded))
}

async fn edit_handler(
    State(state): State<AppState>,
    request: Result<Query<EditRequest>, QueryRejection>,
) -> Result<Response, ApiError> {
    let request = query(request)?;
    let edited = state.ask(move |worker| worker.edit(request)).await?;
    let headers = [
        (header::CONTENT_TYPE, "image/png".to_string()),
        (header::HeaderName::from_static("x-loc-hypernet"), if edited.generated { "ran" } else { "reused" }.into()),
        (header::HeaderName::from_static("x-loc-seconds"), format!("{:.3}", edited.seconds)),
    ];
    Ok((headers, edited.png).into_response())
}

async fn lora_handler(
    State(state): State<AppState>,
    request: Result<Query<Pair>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pair = query(request)?;
    if !pair.strength.is_finite() {
        return Err(ApiError::bad(format!("strength = {}: give a finite number", pair.strength)));
    }
    let file = state.ask(move |worker| worker.lora_file(pair)).await?;
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream"),
        (header::CONTENT_DISPOSITION, "attachment; filename=\"loc_lora.safetensors\""),
    ];
    Ok((headers, file).into_response())
}

#[cfg(test)]
mod tests {
    use super::Recent;

    #[test]
    fn recent_keeps_the_most_recently_used() {
        let mut recent = Recent::new(2);
        recent.insert(1, "one");
        recent.insert(2, "two");
        assert_eq!(recent.get(&1), Some(&"one"), "1 is now the most recent");
        recent.insert(3, "three");
        assert_eq!(recent.get(&2), None, "2 was the least recently used");
        assert_eq!(recent.get(&1), Some(&"one"));
        assert_eq!(recent.get(&3), Some(&"three"));
    }
}
