//! Writes each target's seeds as the cargo-fuzz corpus: `fuzz/corpus/TARGET/seed-N`.
//! Usage: `cargo run --release -p lrai-fuzz --example write_seeds [DIR]` (default
//! `fuzz/corpus`).
#![allow(clippy::print_stdout)]

fn main() -> std::io::Result<()> {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    for (target, _) in lrai_fuzz::TARGETS {
        let dir = std::path::Path::new(&root).join(target);
        fs_err::create_dir_all(&dir)?;
        let seeds = lrai_fuzz::seeds(target);
        for (i, seed) in seeds.iter().enumerate() {
            fs_err::write(dir.join(format!("seed-{i}")), seed)?;
        }
        println!("{target}: {} seeds in {}", seeds.len(), dir.display());
    }
    Ok(())
}
