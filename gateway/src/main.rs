fn main() -> std::process::ExitCode {
    maas_gateway::cli::main()
}
