/// mimalloc rather than glibc's malloc: a request allocates and frees many small buffers on the
/// HTTP workers, and mimalloc's per-thread free lists make each of those cheaper (measured in
/// benches/README.md, "Per-request cost").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    maas_gateway::cli::main()
}
