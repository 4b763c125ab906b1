//! The fuzz target's checks on inputs CI can afford: every prefix of a valid segment, random
//! bytes, and valid batches with garbage between them.

use quipu::fuzzing::recover_segment_bytes;
use rand::{Rng, SeedableRng};

fn valid_segment() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("dir");
    {
        let db = quipu::Quipu::open(dir.path()).expect("open");
        let t = db
            .log()
            .create_topic(
                "t",
                quipu::TopicConfig::default().with_durability(quipu::Durability::Never),
            )
            .expect("create");
        for i in 0..6 {
            let m = quipu::Message::new(vec![i as u8; 20 + i * 7])
                .with_key(format!("k{i}"))
                .with_header("h", "v");
            t.append(m).expect("append");
        }
    }
    let seg = dir.path().join("log/t/0").join(format!("{:020}.log", 0));
    std::fs::read(seg).expect("segment")
}

#[test]
fn every_prefix_of_a_valid_segment_recovers() {
    let seg = valid_segment();
    for cut in 0..=seg.len() {
        recover_segment_bytes(&seg[..cut]);
    }
}

#[test]
fn random_and_spliced_bytes_never_panic() {
    let seg = valid_segment();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..300 {
        let mut bytes = seg.clone();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(0..bytes.len());
            bytes[i] = rng.r#gen();
        }
        recover_segment_bytes(&bytes);
        let noise: Vec<u8> = (0..rng.gen_range(0..300)).map(|_| rng.r#gen()).collect();
        let mut spliced = seg[..seg.len() / 2].to_vec();
        spliced.extend_from_slice(&noise);
        spliced.extend_from_slice(&seg[seg.len() / 2..]);
        recover_segment_bytes(&spliced);
        recover_segment_bytes(&noise);
    }
}
