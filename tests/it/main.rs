//! Integration tests: the binary run on data made here, compared with an independent evaluation.

mod audit;
mod emulators;
mod errors;
mod faults;
mod filter;
mod hostile;
mod join;
mod law;
mod layout;
mod objects;
mod readme;
mod reliability;
mod reuse;
mod s3;
mod scale;
mod util;
mod writers;
