//! Rank: image hits aggregated into a ranked list of hotels, each with its evidence.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::index::Found;

/// How image similarities become a hotel score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "method")]
pub enum Aggregation {
    /// The hotel's best image.
    #[default]
    Best,
    /// Sum of the hotel's best `n` images (rewards several matching photos).
    SumTop { n: usize },
    /// Hotels-50K: the hotel's share of the top images, ties broken by its best image.
    Vote,
}

impl std::str::FromStr for Aggregation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "best" => Ok(Aggregation::Best),
            "vote" => Ok(Aggregation::Vote),
            _ => s
                .strip_prefix("sum")
                .and_then(|n| n.parse().ok())
                .filter(|&n: &usize| n > 0)
                .map(|n| Aggregation::SumTop { n })
                .ok_or_else(|| format!("unknown aggregation {s:?} (best, vote, sum2, sum3, ...)")),
        }
    }
}

/// A hotel in the ranking with the images that put it there.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RankedHotel {
    pub rank: usize,
    pub hotel_id: i64,
    pub score: f32,
    /// Its matching images, best first.
    pub images: Vec<Found>,
}

/// Groups `found` (best first) by hotel and ranks the hotels.
pub fn rank_hotels(found: &[Found], how: Aggregation, top: usize) -> Vec<RankedHotel> {
    let mut by_hotel: HashMap<i64, Vec<Found>> = HashMap::new();
    for f in found {
        by_hotel.entry(f.hotel_id).or_default().push(*f);
    }
    let total = found.len().max(1) as f32;
    let mut hotels: Vec<RankedHotel> = by_hotel
        .into_iter()
        .map(|(hotel_id, mut images)| {
            images.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
            let best = images[0].similarity;
            let score = match how {
                Aggregation::Best => best,
                Aggregation::SumTop { n } => images.iter().take(n).map(|f| f.similarity).sum(),
                // The share decides; the best similarity (< 1) only breaks ties.
                Aggregation::Vote => images.len() as f32 / total + best * 1e-3,
            };
            RankedHotel { rank: 0, hotel_id, score, images }
        })
        .collect();
    hotels.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.hotel_id.cmp(&b.hotel_id)));
    hotels.truncate(top);
    for (i, h) in hotels.iter_mut().enumerate() {
        h.rank = i + 1;
    }
    hotels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(image_id: i64, hotel_id: i64, similarity: f32) -> Found {
        Found { image_id, hotel_id, similarity }
    }

    #[test]
    fn aggregations_order_hotels_differently() {
        let found = [f(1, 10, 0.9), f(2, 20, 0.85), f(3, 20, 0.84), f(4, 20, 0.5), f(5, 30, 0.4)];
        let best = rank_hotels(&found, Aggregation::Best, 10);
        assert_eq!(best.iter().map(|h| h.hotel_id).collect::<Vec<_>>(), vec![10, 20, 30]);
        assert_eq!(best[1].images.len(), 3);
        let sum = rank_hotels(&found, Aggregation::SumTop { n: 2 }, 10);
        assert_eq!(sum[0].hotel_id, 20);
        let vote = rank_hotels(&found, Aggregation::Vote, 2);
        assert_eq!((vote[0].hotel_id, vote.len(), vote[1].rank), (20, 2, 2));
        assert_eq!("sum3".parse::<Aggregation>().unwrap(), Aggregation::SumTop { n: 3 });
        assert!("sum0".parse::<Aggregation>().is_err());
    }
}
