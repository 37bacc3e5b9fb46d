//! `loc-eval serve` over HTTP, as the page uses it: uploads, edits at several strengths from one
//! generated LoRA, the LoRA download, and bad requests that are answered while the server
//! keeps serving. (`scripts/browser_test.py` drives the page itself in Chromium.)

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Cursor};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{run, setup};
use image::{GrayImage, ImageFormat, RgbImage};
use safetensors::SafeTensors;

/// A running server, stopped when dropped.
struct Server {
    child: Child,
    url: String,
    agent: ureq::Agent,
}

impl Server {
    fn start(checkpoint: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loc-eval"))
            .args(["serve", "--port", "0"])
            .arg("--checkpoint")
            .arg(checkpoint)
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let url = loop {
            line.clear();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "the server exited before serving");
            if let Some(at) = line.find("http://") {
                break line[at..].split_whitespace().next().unwrap().trim_end_matches('/').to_string();
            }
        };
        // Keep draining the log so that the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Self { child, url, agent }
    }

    fn get(&self, path: &str) -> Answer {
        Answer::from(self.agent.get(format!("{}{path}", self.url)).call().unwrap())
    }

    fn post(&self, path: &str, body: &[u8]) -> Answer {
        Answer::from(self.agent.post(format!("{}{path}", self.url)).send(body).unwrap())
    }

    fn upload(&self, file: &Path) -> u64 {
        let answer = self.post("/api/image", &std::fs::read(file).unwrap());
        assert_eq!(answer.status, 200, "{}: {}", file.display(), answer.text());
        answer.json()["id"].as_u64().unwrap()
    }

    fn counts(&self) -> (u64, u64) {
        let info = self.get("/api/info");
        assert_eq!(info.status, 200);
        let info = info.json();
        (info["hypernet_runs"].as_u64().unwrap(), info["edits"].as_u64().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl From<ureq::http::Response<ureq::Body>> for Answer {
    fn from(mut response: ureq::http::Response<ureq::Body>) -> Self {
        let headers =
            response.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
        let body = response.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap();
        Self { status: response.status().as_u16(), headers, body }
    }
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// A refusal: `status`, and a JSON error that contains `words`.
    fn assert_refused(&self, status: u16, words: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        let error = self.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(words), "{error:?} does not say {words:?}");
    }
}

#[test]
fn the_page_edits_at_every_strength_from_one_lora_and_survives_bad_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, [before, after, query]) = setup(dir.path());
    let server = Server::start(&checkpoint, &["--max-upload-mb", "1", "--max-side", "512", "--steps", "2"]);

    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains(r#"id="strength""#), "the page has its strength slider");
    assert_eq!(server.get("/api/info").json()["defaults"]["steps"], 2, "--steps sets the page's default");

    // Bad uploads: each is refused with a reason, and the server goes on.
    server.post("/api/image", b"not an image").assert_refused(400, "corrupt image: the uploaded file");
    server.post("/api/image", &vec![7u8; 2 << 20]).assert_refused(413, "--max-upload-mb");
    server.post("/api/image", b"").assert_refused(400, "empty");
    let mut bomb = Vec::new();
    GrayImage::new(6000, 6000).write_to(&mut Cursor::new(&mut bomb), ImageFormat::Png).unwrap();
    assert!(bomb.len() < 1 << 20, "a small file ({} bytes) that decodes to 36 MB", bomb.len());
    server.post("/api/image", &bomb).assert_refused(400, "6000x6000 exceeds 512x512");

    let ids = [&before, &after, &query].map(|file| server.upload(file));
    let edit = |strength: f32, query: u64| {
        server.get(&format!(
            "/api/edit?before={}&after={}&query={query}&strength={strength}&steps=2&guidance=3&image_guidance=1.5&seed=7",
            ids[0], ids[1]
        ))
    };
    let full = edit(1.0, ids[2]);
    assert_eq!(full.status, 200, "{}", full.text());
    assert_eq!(full.headers["content-type"], "image/png");
    assert_eq!(full.headers["x-loc-hypernet"], "ran");
    let half = edit(0.5, ids[2]);
    assert_eq!(half.headers["x-loc-hypernet"], "reused", "the slider reuses the pair's LoRA");
    assert_eq!(server.counts(), (1, 2), "H ran once for two edits");
    assert_ne!(full.body, half.body, "the strength changes the edit");
    assert_eq!(edit(1.0, ids[2]).body, full.body, "the same request gives the same bytes");
    let edited = image::load_from_memory(&full.body).unwrap();
    assert_eq!((edited.width(), edited.height()), (20, 12), "B' comes back at B's size");

    // The page's LoRA download is the file `export-lora` writes for the pair.
    let lora = server.get(&format!("/api/lora?before={}&after={}&strength=0.5", ids[0], ids[1]));
    assert_eq!(lora.status, 200, "{}", lora.text());
    let exported = dir.path().join("exported.safetensors");
    let paths =
        [("--checkpoint", checkpoint.as_path()), ("--before", &before), ("--after", &after), ("--out", &exported)];
    run(&["export-lora", "--format", "kohya", "--strength", "0.5"], &paths);
    let exported = std::fs::read(exported).unwrap();
    let (served, exported) =
        (SafeTensors::deserialize(&lora.body).unwrap(), SafeTensors::deserialize(&exported).unwrap());
    let mut names = served.names();
    names.sort();
    assert!(names.iter().any(|n| n.ends_with(".lora_up.weight")), "a kohya file: {names:?}");
    for name in names {
        assert_eq!(served.tensor(name).unwrap(), exported.tensor(name).unwrap(), "{name}");
    }
    assert_eq!(served.len(), exported.len());

    // Bad requests name what is wrong.
    edit(1.0, 999).assert_refused(404, "upload it again");
    server.get("/api/edit?before=1").assert_refused(400, "missing field");
    server
        .get(&format!(
            "/api/edit?before={0}&after={1}&query={2}&strength=1&steps=0&guidance=3&image_guidance=1.5&seed=0",
            ids[0], ids[1], ids[2]
        ))
        .assert_refused(400, "steps = 0");
    // A new query after all that: the server still edits.
    let other = dir.path().join("other.png");
    RgbImage::from_fn(12, 18, |x, y| image::Rgb([(x * 20) as u8, (y * 14) as u8, 60])).save(&other).unwrap();
    let other = server.upload(&other);
    let edited = image::load_from_memory(&edit(1.0, other).body).unwrap();
    assert_eq!((edited.width(), edited.height()), (12, 18));
    assert_eq!(server.counts(), (1, 4), "four edits, and the pair's LoRA still held");
}
