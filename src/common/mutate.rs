//! Test inputs for the parsers' no-panic tests: seeds with a few random edits, the same
//! for PromQL and templates (the fuzz driver in fuzz/ goes further).

/// `seed` with a few random edits (xorshift, deterministic).
pub fn mutations(seeds: &[&str], n: usize) -> Vec<String> {
    const PIECES: &[&str] = &[
        "(", ")", "{", "}", "[", "]", "\"", "'", "`", ",", ":", "-", " ", "\n", "{{", "}}", "|",
        "$", ".", "\\", "ü", "5m", "by", "offset", "@", "=~", "1e", "0x", "#",
    ];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m.max(1) as u64) as usize
    };
    (0..n)
        .map(|i| {
            let mut s: Vec<char> = seeds[i % seeds.len()].chars().collect();
            for _ in 0..1 + rnd(4) {
                let at = rnd(s.len() + 1);
                match rnd(3) {
                    0 if at < s.len() => {
                        s.remove(at);
                    }
                    1 if at < s.len() => s.insert(at, s[at]),
                    _ => {
                        for (k, c) in PIECES[rnd(PIECES.len())].chars().enumerate() {
                            s.insert((at + k).min(s.len()), c);
                        }
                    }
                }
            }
            s.into_iter().collect()
        })
        .collect()
}
