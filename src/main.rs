fn main() -> std::process::ExitCode {
    corpusgate::main()
}
