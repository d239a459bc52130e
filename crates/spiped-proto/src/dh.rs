//! Diffie-Hellman over RFC 3526 group 14 (2048-bit MODP), generator 2.
//!
//! Exponentiation is constant-time in the exponent, so unlike C spiped no blinding pass is
//! needed. Our public value `2^x` uses a precomputed fixed-base table (the base and modulus never
//! change): 52 multiplications and constant-time table scans instead of ~310 squarings and
//! multiplications. The shared value `y^x` has a fresh base each time and uses crypto-bigint's
//! bounded-exponent ladder.

use std::sync::OnceLock;

use crypto_bigint::modular::{MontyForm, MontyParams};
use crypto_bigint::{Odd, U2048, U320};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length in bytes of a group element on the wire (big-endian).
pub const PUBLIC_LEN: usize = 256;

/// RFC 3526 §3: p = 2^2048 − 2^1984 − 1 + 2^64 · (⌊2^1918 π⌋ + 124476).
const P: U2048 = U2048::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
));

/// Exponents are `2^258 + r` for a 256-bit random `r`, as in C spiped: 259 significant bits.
const EXPONENT_BITS: u32 = 259;

fn params() -> &'static MontyParams<{ U2048::LIMBS }> {
    static PARAMS: OnceLock<MontyParams<{ U2048::LIMBS }>> = OnceLock::new();
    PARAMS.get_or_init(|| {
        let p = Odd::new(P).expect("the group 14 prime is odd");
        MontyParams::new_vartime(p)
    })
}

/// Bits of exponent consumed per table lookup.
const WINDOW: u32 = 5;
/// Lookups per exponentiation: 52 × 5 = 260 ≥ 259 bits.
const WINDOWS: usize = EXPONENT_BITS.div_ceil(WINDOW) as usize;

/// `TABLE[j][d] = 2^(d · 2^(5j)) mod p`, in Montgomery form: 52 × 32 entries, 426 KB, built once.
fn fixed_base_table() -> &'static [[U2048; 1 << WINDOW]] {
    static TABLE: OnceLock<Vec<[U2048; 1 << WINDOW]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let params = *params();
        let mut base = MontyForm::new(&U2048::from_u8(2), params); // 2^(2^(5j))
        let mut table = Vec::with_capacity(WINDOWS);
        for _ in 0..WINDOWS {
            let mut row = [U2048::ZERO; 1 << WINDOW];
            let mut power = MontyForm::one(params);
            for entry in &mut row {
                *entry = *power.as_montgomery();
                power = power.mul(&base);
            }
            base = power;
            table.push(row);
        }
        table
    })
}

/// `2^e mod p` from the table, in constant time with respect to `e`: every window does one scan
/// of its whole row and one multiplication, whatever the exponent's digits.
fn pow2(e: &U320) -> U2048 {
    let params = *params();
    let mut acc = MontyForm::one(params);
    for (j, row) in fixed_base_table().iter().enumerate() {
        // The shift amount is public (the window index); only the digit is secret.
        let digit = (e.shr_vartime(j as u32 * WINDOW).as_words()[0] & ((1 << WINDOW) - 1)) as u32;
        let mut chosen = U2048::ZERO;
        for (d, entry) in row.iter().enumerate() {
            chosen.conditional_assign(entry, (d as u32).ct_eq(&digit));
        }
        acc = acc.mul(&MontyForm::from_montgomery(chosen, params));
    }
    acc.retrieve()
}

/// A secret Diffie-Hellman exponent, built from 32 bytes of caller-supplied randomness.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DhExponent(U320);

impl DhExponent {
    /// `2^258 + r`, where `r` is the 256-bit big-endian integer in `random`.
    pub fn from_random(random: [u8; 32]) -> Self {
        let mut bytes = [0u8; 40];
        bytes[8..].copy_from_slice(&random);
        bytes[7] = 0x04; // bit 258 of a 320-bit big-endian integer
        let e = U320::from_be_slice(&bytes);
        bytes.zeroize();
        Self(e)
    }

    /// The public value `2^x mod p`, big-endian.
    pub fn public(&self) -> [u8; PUBLIC_LEN] {
        pow2(&self.0).to_be_bytes()
    }

    /// The shared value `y^x mod p`, big-endian. `y` must have passed [`check_public`].
    pub fn shared(&self, y: &[u8; PUBLIC_LEN]) -> [u8; PUBLIC_LEN] {
        let y = MontyForm::new(&U2048::from_be_slice(y), *params());
        y.pow_bounded_exp(&self.0, EXPONENT_BITS)
            .retrieve()
            .to_be_bytes()
    }
}

impl std::fmt::Debug for DhExponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DhExponent(MASKED)")
    }
}

/// What a received public value turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublicValue {
    /// A usable group element.
    Element,
    /// Exactly 1: the peer opted out of forward secrecy (`-f`).
    One,
    /// Not acceptable: `y >= p`, or 0 or p−1, which lie outside the prime-order subgroup that
    /// powers of 2 generate, so no honest peer sends them.
    Invalid,
}

/// Classifies a peer's public value. C spiped checks only `y < p`; we also refuse 0 and p−1.
pub(crate) fn check_public(y: &[u8; PUBLIC_LEN]) -> PublicValue {
    let y = U2048::from_be_slice(y);
    if y >= P || y == U2048::ZERO || y == P.wrapping_sub(&U2048::ONE) {
        PublicValue::Invalid
    } else if y == U2048::ONE {
        PublicValue::One
    } else {
        PublicValue::Element
    }
}

/// The value both sides use for `y_SC` when either skipped Diffie-Hellman.
pub(crate) fn one() -> [u8; PUBLIC_LEN] {
    let mut v = [0u8; PUBLIC_LEN];
    v[PUBLIC_LEN - 1] = 1;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_is_a_safe_prime_with_generator_two_in_the_qr_subgroup() {
        // Fermat: 2^(p-1) = 1, and Euler's criterion: 2^((p-1)/2) = 1 (2 is a residue), which a
        // mistyped constant would fail with overwhelming probability.
        let two = MontyForm::new(&U2048::from_u8(2), *params());
        let p_minus_1 = P.wrapping_sub(&U2048::ONE);
        assert_eq!(two.pow(&p_minus_1).retrieve(), U2048::ONE);
        assert_eq!(two.pow(&p_minus_1.shr_vartime(1)).retrieve(), U2048::ONE);
    }

    #[test]
    fn the_fixed_base_table_agrees_with_plain_exponentiation() {
        let two = MontyForm::new(&U2048::from_u8(2), *params());
        for seed in [[0u8; 32], [0xff; 32], [0x5a; 32], [1; 32]] {
            let e = DhExponent::from_random(seed);
            let plain = two.pow_bounded_exp(&e.0, EXPONENT_BITS).retrieve();
            assert_eq!(pow2(&e.0), plain);
        }
        assert_eq!(pow2(&U320::ZERO), U2048::ONE);
        assert_eq!(pow2(&U320::from_u8(10)), U2048::from_u16(1024));
    }

    #[test]
    fn both_sides_agree() {
        let a = DhExponent::from_random([7; 32]);
        let b = DhExponent::from_random([9; 32]);
        let (ya, yb) = (a.public(), b.public());
        assert_eq!(check_public(&ya), PublicValue::Element);
        assert_eq!(a.shared(&yb), b.shared(&ya));
    }

    #[test]
    fn refuses_values_outside_the_subgroup() {
        assert_eq!(check_public(&[0; PUBLIC_LEN]), PublicValue::Invalid);
        assert_eq!(check_public(&[0xff; PUBLIC_LEN]), PublicValue::Invalid);
        assert_eq!(check_public(&P.to_be_bytes()), PublicValue::Invalid);
        let p_minus_1 = P.wrapping_sub(&U2048::ONE).to_be_bytes();
        assert_eq!(check_public(&p_minus_1), PublicValue::Invalid);
        assert_eq!(check_public(&one()), PublicValue::One);
    }
}
