//! The vector operations of the bf16 microkernel: AVX512-BF16 for real, and (in tests) a scalar
//! emulation of the same instructions, so the kernel's packing and tiling run on any CPU.

/// f32 lanes in one accumulator vector.
pub(crate) const LANES: usize = 16;

/// One SIMD flavour: `F` holds [`LANES`] f32, `H` holds as many pairs of bf16 (raw bits).
///
/// # Safety
/// Every pointer argument must be valid for the reads or writes it describes; the
/// implementation's CPU features must be present.
pub(crate) trait Lanes {
    type F: Copy;
    type H: Copy;
    unsafe fn zero() -> Self::F;
    /// `LANES` pairs (2·`LANES` bf16) from `p`.
    unsafe fn load_pairs(p: *const u16) -> Self::H;
    /// The pair at `p` (two bf16, the lower k first) in every lane.
    unsafe fn splat_pair(p: *const u32) -> Self::H;
    /// Lane `j`: `acc[j] + a[2j+1]·b[2j+1] + a[2j]·b[2j]`, summed in f32 (`vdpbf16ps`).
    unsafe fn dot(acc: Self::F, a: Self::H, b: Self::H) -> Self::F;
    unsafe fn load(p: *const f32) -> Self::F;
    unsafe fn store(p: *mut f32, v: Self::F);
    unsafe fn add(a: Self::F, b: Self::F) -> Self::F;
}

/// AVX-512F + AVX512-BF16. Its methods are only called, inlined, from functions compiled with
/// those features (`super::kernel::avx512`).
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx512 {
    type F = std::arch::x86_64::__m512;
    type H = std::arch::x86_64::__m512bh;

    #[inline(always)]
    unsafe fn zero() -> Self::F {
        std::arch::x86_64::_mm512_setzero_ps()
    }

    #[inline(always)]
    unsafe fn load_pairs(p: *const u16) -> Self::H {
        std::mem::transmute(std::arch::x86_64::_mm512_loadu_si512(p.cast()))
    }

    #[inline(always)]
    unsafe fn splat_pair(p: *const u32) -> Self::H {
        std::mem::transmute(std::arch::x86_64::_mm512_set1_epi32(p.read() as i32))
    }

    #[inline(always)]
    unsafe fn dot(acc: Self::F, a: Self::H, b: Self::H) -> Self::F {
        std::arch::x86_64::_mm512_dpbf16_ps(acc, a, b)
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::F {
        std::arch::x86_64::_mm512_loadu_ps(p)
    }

    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::F) {
        std::arch::x86_64::_mm512_storeu_ps(p, v)
    }

    #[inline(always)]
    unsafe fn add(a: Self::F, b: Self::F) -> Self::F {
        std::arch::x86_64::_mm512_add_ps(a, b)
    }
}

/// Scalar emulation of [`Avx512`], instruction by instruction (Intel's pseudo-code for
/// `vdpbf16ps`: the odd product is added first).
#[cfg(test)]
pub(crate) struct Emulated;

#[cfg(test)]
impl Lanes for Emulated {
    type F = [f32; LANES];
    type H = [u16; 2 * LANES];

    unsafe fn zero() -> Self::F {
        [0.0; LANES]
    }

    unsafe fn load_pairs(p: *const u16) -> Self::H {
        p.cast::<Self::H>().read_unaligned()
    }

    unsafe fn splat_pair(p: *const u32) -> Self::H {
        let pair = p.read();
        std::array::from_fn(|i| (pair >> (16 * (i % 2))) as u16)
    }

    unsafe fn dot(acc: Self::F, a: Self::H, b: Self::H) -> Self::F {
        let f = |bits: u16| f32::from_bits(u32::from(bits) << 16);
        std::array::from_fn(|j| {
            let odd = acc[j] + f(a[2 * j + 1]) * f(b[2 * j + 1]);
            odd + f(a[2 * j]) * f(b[2 * j])
        })
    }

    unsafe fn load(p: *const f32) -> Self::F {
        p.cast::<Self::F>().read_unaligned()
    }

    unsafe fn store(p: *mut f32, v: Self::F) {
        p.cast::<Self::F>().write_unaligned(v)
    }

    unsafe fn add(a: Self::F, b: Self::F) -> Self::F {
        std::array::from_fn(|j| a[j] + b[j])
    }
}
