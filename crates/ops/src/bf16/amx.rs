//! The AMX kernel (`tdpbf16ps`): a 32×32 tile of f32 sums in four tile registers, fed 32 k at a
//! time by two A tiles (16 rows × 32 bf16) and two B tiles (16 k pairs × 16 columns).
//!
//! Its A panel holds, for each chunk of 16 k pairs, rows 0..32 of 32 bf16 each (rows 0..16 are
//! one tile, 16..32 the next); the B panel is the shared VNNI layout, read 16 columns at a time
//! with a row stride of 128 bytes. Linux hands out the tile registers only on request
//! ([`available`] asks once per process).

use std::arch::asm;
use std::sync::OnceLock;

use super::kernel::Kernel;
use super::pack::{row_bf16, NR};
use crate::matmul::MatRef;

/// k pairs per tile chunk (one A tile row is 16 pairs, one B tile 16 pair rows).
const CHUNK: usize = 16;
/// bf16 per chunk of an A panel (32 rows × 32 k).
const A_CHUNK: usize = 32 * 2 * CHUNK;

/// Whether AMX-BF16 can run here: the CPU has AMX-TILE and AMX-BF16 (and AVX512-BF16 for the
/// packing), and Linux granted this process the tile data state.
pub(crate) fn available() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| crate::compute::bf16_native() && cpu_has_amx() && request_tiles())
}

/// CPUID leaf 7: EDX bit 22 (AMX-BF16) and bit 24 (AMX-TILE).
fn cpu_has_amx() -> bool {
    let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
    edx & (1 << 22) != 0 && edx & (1 << 24) != 0
}

/// Asks Linux for the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`);
/// without it the first tile instruction faults.
fn request_tiles() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

/// Packs A for the AMX tile (layout above): shared by [`Amx`] and the tests' emulation.
pub(crate) fn pack_a(
    a: &MatRef<'_>,
    (m0, mc): (usize, usize),
    ks: (usize, usize),
    pairs: usize,
    out: &mut [u16],
) {
    let mut row = vec![0u16; 2 * pairs];
    for (panel, r0) in (0..mc).step_by(32).enumerate() {
        let dst = &mut out[panel * pairs * 2 * 32..][..pairs * 2 * 32];
        for i in 0..32 {
            if r0 + i < mc {
                row_bf16(a, m0 + r0 + i, ks, &mut row);
            } else {
                row.fill(0);
            }
            for (t, chunk) in row.chunks_exact(2 * CHUNK).enumerate() {
                dst[t * A_CHUNK + i * 2 * CHUNK..][..2 * CHUNK].copy_from_slice(chunk);
            }
        }
    }
}

/// The tile configuration: palette 1, eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct Config {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

const CONFIG: Config = Config {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// The AMX-BF16 kernel (tiles 0..4 sums, 4..6 A, 6..8 B).
pub(crate) struct Amx;

impl Kernel for Amx {
    const MR: usize = 32;
    const KC: usize = 512;
    const MC: usize = 4 * 32;
    const NC: usize = 16 * NR;
    const PAIRS: usize = CHUNK;

    fn pack_a(
        a: &MatRef<'_>,
        rows: (usize, usize),
        ks: (usize, usize),
        pairs: usize,
        out: &mut [u16],
    ) {
        pack_a(a, rows, ks, pairs, out)
    }

    #[inline(always)]
    unsafe fn begin() {
        asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly));
    }

    #[inline(always)]
    unsafe fn end() {
        asm!("tilerelease", options(nostack, nomem));
    }

    #[inline(always)]
    unsafe fn tile(
        pairs: usize,
        a: *const u16,
        b: *const u16,
        c: *mut f32,
        rs: usize,
        accumulate: bool,
    ) {
        let (c2, cs) = (c.add(16 * rs), rs * 4);
        if accumulate {
            asm!(
                "tileloadd tmm0, [{c} + {cs}]",
                "tileloadd tmm1, [{c} + {cs} + 64]",
                "tileloadd tmm2, [{c2} + {cs}]",
                "tileloadd tmm3, [{c2} + {cs} + 64]",
                c = in(reg) c, c2 = in(reg) c2, cs = in(reg) cs,
                options(nostack, readonly),
            );
        } else {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem),
            );
        }
        for t in 0..pairs / CHUNK {
            asm!(
                "tileloadd tmm4, [{a} + {s64}]",
                "tileloadd tmm5, [{a} + {s64} + 1024]",
                "tileloadd tmm6, [{b} + {s128}]",
                "tileloadd tmm7, [{b} + {s128} + 64]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a = in(reg) a.add(t * A_CHUNK),
                b = in(reg) b.add(t * CHUNK * 2 * NR),
                s64 = in(reg) 64usize,
                s128 = in(reg) 128usize,
                options(nostack, readonly),
            );
        }
        asm!(
            "tilestored [{c} + {cs}], tmm0",
            "tilestored [{c} + {cs} + 64], tmm1",
            "tilestored [{c2} + {cs}], tmm2",
            "tilestored [{c2} + {cs} + 64], tmm3",
            c = in(reg) c, c2 = in(reg) c2, cs = in(reg) cs,
            options(nostack),
        );
    }
}

/// [`super::kernel::gemm`] with [`Amx`] (its packing compiled for AVX-512F + AVX512-BF16).
///
/// # Safety
/// As [`super::kernel::gemm`]; [`available`] returned true.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(crate) unsafe fn gemm(
    dst: super::kernel::Dst,
    accumulate: bool,
    a: MatRef<'_>,
    b: MatRef<'_>,
    packed: super::kernel::Packed<'_>,
) {
    super::kernel::gemm::<Amx>(dst, accumulate, a, b, packed)
}

/// A scalar emulation of [`Amx`]'s tile over the same packed panels (Intel's pseudo-code for
/// `tdpbf16ps`), so the AMX layouts are tested on any CPU.
#[cfg(test)]
pub(crate) struct AmxEmulated;

#[cfg(test)]
impl Kernel for AmxEmulated {
    const MR: usize = Amx::MR;
    const KC: usize = Amx::KC;
    const MC: usize = Amx::MC;
    const NC: usize = Amx::NC;
    const PAIRS: usize = Amx::PAIRS;

    fn pack_a(
        a: &MatRef<'_>,
        rows: (usize, usize),
        ks: (usize, usize),
        pairs: usize,
        out: &mut [u16],
    ) {
        pack_a(a, rows, ks, pairs, out)
    }

    unsafe fn tile(
        pairs: usize,
        a: *const u16,
        b: *const u16,
        c: *mut f32,
        rs: usize,
        accumulate: bool,
    ) {
        let f = |bits: u16| f32::from_bits(u32::from(bits) << 16);
        for m in 0..32 {
            for n in 0..NR {
                let mut sum = if accumulate { *c.add(m * rs + n) } else { 0.0 };
                for t in 0..pairs / CHUNK {
                    let arow = a.add(t * A_CHUNK + m * 2 * CHUNK);
                    let brows = b.add(t * CHUNK * 2 * NR);
                    for p in 0..CHUNK {
                        let bp = brows.add(p * 2 * NR + 2 * n);
                        sum += f(*arow.add(2 * p)) * f(*bp);
                        sum += f(*arow.add(2 * p + 1)) * f(*bp.add(1));
                    }
                }
                *c.add(m * rs + n) = sum;
            }
        }
    }
}
