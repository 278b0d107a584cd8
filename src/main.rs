fn main() {
    std::process::exit(yolo_qat::cli::main());
}
