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

/// How the hotel scores of several query photos of one place become one score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fusion {
    /// The mean of the photos' scores; a hotel a photo did not retrieve gets that photo's
    /// lowest retrieved score (it scored no higher).
    #[default]
    Mean,
    /// The best of the photos' scores.
    Max,
}

impl std::str::FromStr for Fusion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mean" => Ok(Fusion::Mean),
            "max" => Ok(Fusion::Max),
            _ => Err(format!("unknown fusion {s:?} (mean, max)")),
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
    /// Which query photo found each of `images` (all 0 for a one-photo search).
    pub photos: Vec<usize>,
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
            let photos = vec![0; images.len()];
            RankedHotel { rank: 0, hotel_id, score, images, photos }
        })
        .collect();
    order(&mut hotels, top);
    hotels
}

/// Sorts best first (ties by id), keeps `top` and numbers the ranks.
fn order(hotels: &mut Vec<RankedHotel>, top: usize) {
    hotels.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.hotel_id.cmp(&b.hotel_id)));
    hotels.truncate(top);
    for (i, h) in hotels.iter_mut().enumerate() {
        h.rank = i + 1;
    }
}

/// One ranking from the rankings of several query photos of one place (each complete, as
/// `rank_hotels` made it): hotel scores fused by `how`, each hotel's images merged best first
/// (a stored photo found by two query photos is kept once, with its best similarity).
pub fn fuse(mut per_photo: Vec<Vec<RankedHotel>>, how: Fusion, top: usize) -> Vec<RankedHotel> {
    if per_photo.len() == 1 {
        let mut hotels = per_photo.swap_remove(0);
        order(&mut hotels, top);
        return hotels;
    }
    let floors: Vec<f32> = per_photo.iter().map(|r| r.iter().map(|h| h.score).fold(f32::INFINITY, f32::min)).collect();
    // Per hotel: each photo's score (if it found the hotel), and its images with their photo.
    type Gathered = (Vec<Option<f32>>, Vec<(Found, usize)>);
    let mut fused: HashMap<i64, Gathered> = HashMap::new();
    for (p, ranking) in per_photo.iter().enumerate() {
        for h in ranking {
            let e = fused.entry(h.hotel_id).or_insert_with(|| (vec![None; per_photo.len()], Vec::new()));
            e.0[p] = Some(h.score);
            e.1.extend(h.images.iter().map(|f| (*f, p)));
        }
    }
    let mut hotels: Vec<RankedHotel> = fused
        .into_iter()
        .map(|(hotel_id, (scores, mut images))| {
            let score = match how {
                Fusion::Mean => {
                    let sum: f32 =
                        scores.iter().zip(&floors).map(|(s, floor)| s.unwrap_or(if floor.is_finite() { *floor } else { 0.0 })).sum();
                    sum / scores.len() as f32
                }
                Fusion::Max => scores.iter().flatten().copied().fold(f32::NEG_INFINITY, f32::max),
            };
            images.sort_by(|a, b| b.0.similarity.total_cmp(&a.0.similarity).then(a.1.cmp(&b.1)));
            let mut seen = std::collections::HashSet::new();
            images.retain(|(f, _)| seen.insert(f.image_id));
            let (images, photos) = images.into_iter().unzip();
            RankedHotel { rank: 0, hotel_id, score, images, photos }
        })
        .collect();
    order(&mut hotels, top);
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

    #[test]
    fn fusion_rewards_the_hotel_every_photo_finds() {
        // Photo 0 puts hotel 10 first, barely; photo 1 ranks 20 well and never sees 10.
        let a = rank_hotels(&[f(1, 10, 0.80), f(2, 20, 0.79), f(3, 30, 0.5)], Aggregation::Best, 100);
        let b = rank_hotels(&[f(4, 20, 0.9), f(2, 20, 0.7), f(5, 40, 0.6)], Aggregation::Best, 100);
        let mean = fuse(vec![a.clone(), b.clone()], Fusion::Mean, 10);
        assert_eq!(mean.iter().map(|h| h.hotel_id).collect::<Vec<_>>(), vec![20, 10, 30, 40]);
        // 30 and 40 tie (each found by one photo, at the other's floor): the lower id first.
        // Hotel 10: (0.80 + photo 1's floor 0.6) / 2.
        assert!((mean[1].score - 0.7).abs() < 1e-6, "{}", mean[1].score);
        // Image 2 was found by both photos: kept once, with its best similarity, from photo 0.
        assert_eq!(mean[0].images.iter().map(|f| f.image_id).collect::<Vec<_>>(), vec![4, 2]);
        assert_eq!(mean[0].photos, vec![1, 0]);
        let max = fuse(vec![a.clone(), b], Fusion::Max, 2);
        assert_eq!((max[0].hotel_id, max.len(), max[1].rank), (20, 2, 2));
        // One photo: its own ranking.
        assert_eq!(fuse(vec![a.clone()], Fusion::Mean, 10), a);
    }
}
