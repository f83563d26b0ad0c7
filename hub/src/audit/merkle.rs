//! The records as leaves of an RFC 6962 Merkle tree: leaf and node hashing, the tree's right
//! edge ([`Frontier`], O(log n) hashes, enough to give the root after every append), and
//! inclusion proofs (RFC 9162 §2.1.3) built from the leaves and checked against a root.
//!
//! A leaf is the record's line as written, without its '\n': SHA-256(0x00 || line). A node is
//! SHA-256(0x01 || left || right). The empty tree's root is SHA-256 of nothing.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf_hash(line: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(line);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The right edge of the tree: the roots of its perfect subtrees, largest first, one per set bit
/// of `size`. Appending merges equal-sized subtrees, like adding 1 to a binary counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    edge: Vec<Hash>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self.edge.pop().expect("one subtree per set bit");
            node = node_hash(&left, &node);
            size >>= 1;
        }
        self.edge.push(node);
        self.size += 1;
    }

    /// The root of the tree of all leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut it = self.edge.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// The root of `leaves` (MTH of RFC 6962 §2.1).
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The audit path of leaf `index` in the tree of `leaves` (PATH of RFC 6962 §2.1.1), leaf side first.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n as u64) as usize;
    if index < k {
        let mut p = inclusion_proof(&leaves[..k], index);
        p.push(root_of(&leaves[k..]));
        p
    } else {
        let mut p = inclusion_proof(&leaves[k..], index - k);
        p.push(root_of(&leaves[..k]));
        p
    }
}

/// Does `proof` show that `leaf` is leaf `index` of the tree of `size` leaves with `root`?
/// (RFC 9162 §2.1.3.2.)
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::line::hex;

    /// The leaves of the Certificate Transparency reference tests, and the roots of their first
    /// 1..=8 (from certificate-transparency-go's merkle tests).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn leaves() -> Vec<Hash> {
        LEAVES.iter().map(|l| leaf_hash(&unhex(l))).collect()
    }

    #[test]
    fn roots_match_the_rfc_6962_reference_vectors() {
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let leaves = leaves();
        let mut frontier = Frontier::default();
        for (i, want) in ROOTS.iter().enumerate() {
            frontier.push(leaves[i]);
            assert_eq!(hex(&frontier.root()), *want, "frontier, size {}", i + 1);
            assert_eq!(
                hex(&root_of(&leaves[..=i])),
                *want,
                "root_of, size {}",
                i + 1
            );
        }
    }

    #[test]
    fn the_frontier_agrees_with_the_whole_tree_at_every_size() {
        let leaves: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut frontier = Frontier::default();
        for i in 0..leaves.len() {
            frontier.push(leaves[i]);
            assert_eq!(frontier.root(), root_of(&leaves[..=i]), "size {}", i + 1);
            assert!(frontier.edge.len() <= 64 - frontier.size.leading_zeros() as usize);
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_changed_one_does_not() {
        let leaves: Vec<Hash> = (0u32..37).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for size in 1..=leaves.len() {
            let tree = &leaves[..size];
            let root = root_of(tree);
            for index in 0..size {
                let proof = inclusion_proof(tree, index);
                let (i, n) = (index as u64, size as u64);
                assert!(
                    verify_inclusion(i, n, &tree[index], &proof, &root),
                    "{index}/{size}"
                );
                if size > 1 {
                    let other = (index + 1) % size;
                    assert!(!verify_inclusion(i, n, &tree[other], &proof, &root));
                    let mut bent = proof.clone();
                    bent[0][0] ^= 1;
                    assert!(!verify_inclusion(i, n, &tree[index], &bent, &root));
                }
                assert!(!verify_inclusion(n, n, &tree[index], &proof, &root));
            }
        }
    }
}
