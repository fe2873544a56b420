//! The 16×16 transpose of 32-bit words in AVX-512 registers, for the copies that turn a
//! column-major block row-major (bf16 packing of a column-major B, a transposed f32 operand).

/// The 16×16 matrix of 32-bit words whose row `i` is `m[i]`, transposed.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn words_16x16(
    m: [std::arch::x86_64::__m512i; 16],
) -> [std::arch::x86_64::__m512i; 16] {
    use std::arch::x86_64::*;
    // Words within 128-bit lanes: rows (2i, 2i+1) interleaved, then pairs of those.
    let mut a = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        a[2 * i] = _mm512_unpacklo_epi32(m[2 * i], m[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(m[2 * i], m[2 * i + 1]);
    }
    let mut c = [_mm512_setzero_si512(); 16];
    for i in 0..4 {
        for h in 0..2 {
            let (x, y) = (a[4 * i + h], a[4 * i + 2 + h]);
            c[4 * i + 2 * h] = _mm512_unpacklo_epi64(x, y);
            c[4 * i + 2 * h + 1] = _mm512_unpackhi_epi64(x, y);
        }
    }
    // Now c[4i + r] holds, in 128-bit lane l, words (4i..4i+4) of column 4l + r. Gather the
    // 128-bit lanes: first across pairs of row groups, then across the two halves.
    let mut e = [_mm512_setzero_si512(); 16];
    for i in 0..2 {
        for r in 0..4 {
            let (x, y) = (c[8 * i + r], c[8 * i + 4 + r]);
            e[8 * i + r] = _mm512_shuffle_i32x4::<0b10_00_10_00>(x, y);
            e[8 * i + 4 + r] = _mm512_shuffle_i32x4::<0b11_01_11_01>(x, y);
        }
    }
    let mut out = [_mm512_setzero_si512(); 16];
    for h in 0..2 {
        for r in 0..4 {
            let (x, y) = (e[4 * h + r], e[8 + 4 * h + r]);
            out[r + 4 * h] = _mm512_shuffle_i32x4::<0b10_00_10_00>(x, y);
            out[r + 8 + 4 * h] = _mm512_shuffle_i32x4::<0b11_01_11_01>(x, y);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_by_sixteen_words() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return println!("no AVX-512 here: the transpose is not used");
        }
        // SAFETY: the CPU has AVX-512F.
        unsafe {
            use std::arch::x86_64::*;
            let rows: [__m512i; 16] = std::array::from_fn(|i| {
                let words: [i32; 16] = std::array::from_fn(|j| (16 * i + j) as i32);
                std::mem::transmute::<[i32; 16], __m512i>(words)
            });
            for (j, col) in words_16x16(rows).iter().enumerate() {
                let words = std::mem::transmute::<__m512i, [i32; 16]>(*col);
                let want: [i32; 16] = std::array::from_fn(|i| (16 * i + j) as i32);
                assert_eq!(words, want, "column {j}");
            }
        }
    }
}
