//! Arbitrary bytes as an image file: format sniffing, header, pixel limit, decoding
//! (libjpeg for JPEG, the `image` crate otherwise), EXIF orientation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yolo_qat_readers::image_io::decode_bytes;

/// 4 MP: small enough for fast runs, large enough that real headers pass.
const LIMIT: u64 = 1 << 22;

fuzz_target!(|data: &[u8]| {
    // mozjpeg reports corrupt data by panicking, and image_io catches it; libfuzzer-sys's
    // hook would abort at the panic itself. A panic that escapes still aborts (libfuzzer-sys
    // catches it around this closure), so only the message is printed here.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|p| eprintln!("{p}"))));
    match decode_bytes(data, LIMIT) {
        Ok(img) => {
            assert!((img.width * img.height) as u64 <= LIMIT, "{}x{} over the limit", img.width, img.height);
            assert_eq!(img.data.len(), img.width * img.height * 3);
        }
        Err(e) => assert!(!e.contains('\n'), "{e:?}"),
    }
});
