//! `loc-eval`: metrics, evaluation protocols, and the `edit` / `export-lora` commands.
//!
//! No command exists yet: they need the editor and the hypernetwork. Until then the binary
//! says so and fails, rather than pretending to work.

fn main() {
    eprintln!("loc-eval: no commands yet (edit, export-lora, magicbrush arrive with the editor and the hypernetwork)");
    std::process::exit(2);
}
