//! `byfly`: the operator and integrator command line (work in progress).
//!
//! It will offer `init`, `kaspi`, `status`, `show`, `list`, `methods`, `cancel`, `refund`,
//! `webhook verify`, `sim-terminal` and `admin` commands on top of `byfly-client`.

fn main() {
    eprintln!("byfly: not built yet; see README.md, section Status");
    std::process::exit(2);
}
