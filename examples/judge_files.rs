//! Development aid: prints the emoji judge's best matches for picture files.
use diffuse::data::emoji::NOUNS;
use diffuse::judge::emoji::best_matches;

fn main() {
    for path in std::env::args().skip(1) {
        let img = image::open(&path).expect("picture").to_rgb8();
        let mut m = best_matches(&img);
        m.sort_by(|a, b| a.error.total_cmp(&b.error));
        let got: Vec<String> = m
            .iter()
            .take(4)
            .map(|d| {
                format!(
                    "{}@{},{} s{} e{:.0}",
                    NOUNS[d.noun].name, d.x, d.y, d.side, d.error
                )
            })
            .collect();
        println!("{path}: {got:?}");
    }
}
