//! Media: photo bytes in and out — decoding within limits into upright pixels (`decode`), and
//! the copies that are stored or shown, carrying pixels only (`clean`); HEIC and AVIF through
//! libheif (`heif`).

pub mod clean;
pub mod decode;
pub mod heif;
