//! Deflate for what the store writes more than once a tick (notification bodies, bucket item
//! blocks, append-log records): text-heavy rows that shrink 2–3× and would otherwise be most of
//! the bytes written to a small edge disk (issue 21). One place, so every table uses the same
//! level and the same guard against a corrupt row inflating without bound.

use std::cell::RefCell;
use std::io::Read;

thread_local! {
    /// The compressor's state (≈ 300 KiB of tables), kept per thread: allocating it per call
    /// went to `mmap` and page faults on every append-log record of a busy single-event load.
    static COMPRESS: RefCell<flate2::Compress> =
        RefCell::new(flate2::Compress::new(flate2::Compression::fast(), false));
}

/// Appends `bytes` deflated (fast level: these are written on the tick's and the journal's
/// threads, where a slower level would cost more time than the bytes it saves).
pub(super) fn deflate_into(out: &mut Vec<u8>, bytes: &[u8]) {
    COMPRESS.with(|c| {
        let mut c = c.borrow_mut();
        c.reset();
        let start = c.total_in();
        out.reserve(bytes.len() / 2 + 64);
        loop {
            let read = (c.total_in() - start) as usize;
            let status = c
                .compress_vec(&bytes[read..], out, flate2::FlushCompress::Finish)
                .expect("deflating into a Vec cannot fail");
            if status == flate2::Status::StreamEnd {
                break;
            }
            out.reserve(out.capacity().max(4096));
        }
    });
}

/// `stored` inflated, refusing anything that would inflate past `max` bytes: a corrupt row
/// is an error, never a reason to allocate.
pub(super) fn inflate(stored: &[u8], max: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(stored)
        .take(max + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("inflates past {max} bytes"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_bounds_what_it_inflates() {
        let text = "the customer asked about the refund ".repeat(100);
        let mut out = vec![7];
        deflate_into(&mut out, text.as_bytes());
        assert_eq!(out[0], 7, "appends after what is there");
        assert!(out.len() < text.len() / 4);
        assert_eq!(
            inflate(&out[1..], text.len() as u64).unwrap(),
            text.as_bytes()
        );
        assert!(inflate(&out[1..], text.len() as u64 - 1).is_err());
        assert!(inflate(&[0xff; 16], 1 << 20).is_err(), "not deflate");
        // The reused compressor starts each stream afresh, whatever the last one was.
        let noise: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for input in [&noise[..], text.as_bytes(), b"", &noise[..10]] {
            let mut out = Vec::new();
            deflate_into(&mut out, input);
            assert_eq!(inflate(&out, input.len() as u64).unwrap(), input);
        }
    }
}
