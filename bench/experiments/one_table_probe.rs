// What one probe of one table holding every remembered id would cost on this machine (README,
// Performance, "Latest: the bounds of an id's cost"): a cuckoo-style table of 2^21 buckets of
// four u32 slots (16-bit fingerprint, 16-bit epoch; 32 MiB, 90 % full: 7.5 million ids, the
// size of the filters at the default cap), probed at two buckets by 1,000 random ids with the
// caches flushed.
// Standalone, not built with alertd: `cargo new probe && cp this probe/src/main.rs`, add
// `rand = "0.8"` and `libc = "0.2"`, then `cargo run --release` (4 KiB pages) and
// `cargo run --release -- huge` (the table `madvise`d to transparent huge pages).
use std::time::Instant;
// Probe cost of one cuckoo-style table (2 buckets of 4 u32 slots: 16-bit fingerprint, 16-bit
// epoch) holding ~10M ids, vs asking a fuse filter per group/run.
fn mix(mut x: u64) -> u64 { x ^= x >> 33; x = x.wrapping_mul(0xff51afd7ed558ccd); x ^= x >> 33; x }
fn main() {
    let buckets: usize = 1 << 21; // 2M buckets × 16 B = 32 MiB
    let mask = buckets - 1;
    let huge = std::env::args().nth(1).is_some();
    let mut t: Vec<[u32; 4]> = Vec::with_capacity(buckets + (1 << 17));
    if huge {
        let p = t.as_mut_ptr() as usize; let al = (p + (2<<20) - 1) & !((2<<20)-1);
        let r = unsafe { libc::madvise(al as *mut libc::c_void, buckets * 16 - (al - p), libc::MADV_HUGEPAGE) };
        println!("madvise {r}");
    }
    t.resize(buckets, [0; 4]);
    // fill 90 % with random entries (fingerprint never 0)
    for b in t.iter_mut() { for s in b.iter_mut() { if rand::random::<u8>() < 230 { *s = (rand::random::<u32>() | 1) ; } } }
    let mut junk = vec![0u8; 64 << 20];
    let probe = |t: &Vec<[u32; 4]>, h: u64| -> u32 {
        let fp = ((h >> 48) as u16 | 1) as u32;
        let i1 = (h as usize) & mask;
        let i2 = (i1 ^ (mix(fp as u64) as usize)) & mask;
        let (a, b) = (&t[i1], &t[i2]);
        let mut m = 0;
        for s in a.iter().chain(b.iter()) { if (*s & 0xffff) == fp { m += 1; } }
        m
    };
    for round in 0..5 {
        let his: Vec<u64> = (0..1000).map(|_| rand::random()).collect();
        for i in (0..junk.len()).step_by(64) { junk[i] = junk[i].wrapping_add(1); }
        let t0 = Instant::now(); let mut c = 0;
        for h in &his { c += probe(&t, *h); }
        let cold = t0.elapsed().as_nanos() as f64 / 1000.0;
        // insert: write into the first bucket's first slot (what an insert touches)
        for i in (0..junk.len()).step_by(64) { junk[i] = junk[i].wrapping_add(1); }
        let t0 = Instant::now();
        for h in &his { let i1 = (*h as usize) & mask; t[i1][(h >> 62) as usize] = (*h >> 32) as u32 | 1; }
        let ins = t0.elapsed().as_nanos() as f64 / 1000.0;
        println!("round {round}: probe cold {cold:.1} ns, insert cold {ins:.1} ns ({c})");
    }
}
