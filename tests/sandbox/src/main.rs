//! `pve-sandbox` binary: see the library docs (`pve_sandbox`) and `docs/sandbox.md`.

fn main() {
    std::process::exit(pve_sandbox::main_exit_code());
}
