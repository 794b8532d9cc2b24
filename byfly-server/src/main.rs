//! `byfly-server` binary (work in progress): see the crate docs.

fn main() {
    eprintln!("byfly-server: not built yet; see README.md, section Status");
    std::process::exit(2);
}
