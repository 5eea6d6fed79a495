// Whether prefetching a filter's three lines a few ids ahead makes asking the fuse filters
// cheaper (README, Performance, "Latest: the bounds of an id's cost"): 14 BinaryFuse16 filters
// of 114,688 ids, asked filter by filter (as `maybe_runs` does) by 1,000 random ids, with and
// without the caches flushed. The positions are xorf 0.13's (private) hashing, checked equal
// to `contains` first. Standalone: a cargo project with `xorf = "0.13"`, `rand = "0.8"`.
use std::time::Instant;
use xorf::{BinaryFuse16, Filter};
#[inline] fn fmix(mut k: u64) -> u64 { k ^= k >> 33; k = k.wrapping_mul(0xff51afd7ed558ccd); k ^= k >> 33; k = k.wrapping_mul(0xc4ceb9fe1a85ec53); k ^= k >> 33; k }
#[inline] fn pos(f: &BinaryFuse16, key: u64) -> (u64, [usize; 3]) {
    let d = &f.descriptor;
    let hash = fmix(key.wrapping_add(d.seed));
    let hi = ((hash as u128 * d.segment_count_length as u128) >> 64) as u32;
    let h0 = hi; let mut h1 = h0 + d.segment_length; let mut h2 = h1 + d.segment_length;
    h1 ^= ((hash >> 18) as u32) & d.segment_length_mask; h2 ^= (hash as u32) & d.segment_length_mask;
    (hash, [h0 as usize, h1 as usize, h2 as usize])
}
#[inline] fn has(f: &BinaryFuse16, hash: u64, p: [usize; 3]) -> bool {
    let fp = (hash ^ (hash >> 32)) as u16;
    fp == f.fingerprints[p[0]] ^ f.fingerprints[p[1]] ^ f.fingerprints[p[2]]
}
fn probe_pf(f: &BinaryFuse16, his: &[u64], out: &mut [u32], dist: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let n = his.len();
    let mut ring: Vec<(u64, [usize; 3])> = Vec::with_capacity(n);
    for (i, h) in his.iter().enumerate() {
        let (hash, p) = pos(f, *h);
        for q in p { unsafe { _mm_prefetch(f.fingerprints.as_ptr().add(q) as *const i8, _MM_HINT_T0) } }
        ring.push((hash, p));
        if i >= dist { let (hh, pp) = ring[i - dist]; if has(f, hh, pp) { out[i - dist] += 1; } }
    }
    for j in n.saturating_sub(dist)..n { let (hh, pp) = ring[j]; if has(f, hh, pp) { out[j] += 1; } }
}
fn main() {
    let nf = 14; let n = 114_688;
    let fuse: Vec<BinaryFuse16> = (0..nf).map(|_| { let k: Vec<u64> = (0..n).map(|_| rand::random()).collect(); BinaryFuse16::try_from(&k).unwrap() }).collect();
    // equivalence
    for f in &fuse { for _ in 0..100000 { let k: u64 = rand::random(); let (h,p)=pos(f,k); assert_eq!(f.contains(&k), has(f,h,p)); } }
    let mut junk = vec![0u8; 64 << 20];
    for flush in [true, false] { for round in 0..4 {
        let his: Vec<u64> = (0..1000).map(|_| rand::random()).collect();
        if flush { for i in (0..junk.len()).step_by(64) { junk[i] = junk[i].wrapping_add(1); } }
        let t = Instant::now(); let mut c = 0;
        for f in &fuse { for h in &his { if f.contains(h) { c += 1; } } }
        let a = t.elapsed().as_nanos() as f64 / (nf * 1000) as f64;
        let mut res = vec![];
        for dist in [4usize, 8, 16] {
            let his: Vec<u64> = (0..1000).map(|_| rand::random()).collect();
            if flush { for i in (0..junk.len()).step_by(64) { junk[i] = junk[i].wrapping_add(1); } }
            let mut out = vec![0u32; 1000];
            let t = Instant::now();
            for f in &fuse { probe_pf(f, &his, &mut out, dist); }
            res.push(t.elapsed().as_nanos() as f64 / (nf * 1000) as f64);
            c += out.iter().sum::<u32>();
        }
        println!("flush {flush} round {round}: contains {a:.1} ns, prefetch d4 {:.1} d8 {:.1} d16 {:.1} ({c})", res[0], res[1], res[2]);
    }}
}
