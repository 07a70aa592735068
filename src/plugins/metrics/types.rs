//! The metric types and bucket resolutions of the 0.26.0 storage.

/// The kind of a metric, stored in `metric_definitions.metric_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricType {
    /// Sums increments per bucket (`totals`).
    Counter,
    /// Keeps the last value per bucket (`gauges`).
    Gauge,
    /// Count, total, minimum and maximum per bucket.
    Histogram,
}

impl MetricType {
    /// `counter`, `gauge` or `histogram`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<MetricType> {
        match s {
            "counter" => Some(MetricType::Counter),
            "gauge" => Some(MetricType::Gauge),
            "histogram" => Some(MetricType::Histogram),
            _ => None,
        }
    }
}

/// A bucket width: upstream's `1min`, `5min`, `1hour`, `1day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// 60-second buckets (default retention 60 points).
    OneMinute,
    /// 300-second buckets (default retention 288 points).
    FiveMinutes,
    /// 3600-second buckets (default retention 168 points).
    OneHour,
    /// 86400-second buckets (default retention 90 points).
    OneDay,
}

impl Resolution {
    /// Every resolution, narrowest first.
    pub const ALL: [Resolution; 4] = [
        Resolution::OneMinute,
        Resolution::FiveMinutes,
        Resolution::OneHour,
        Resolution::OneDay,
    ];

    /// Bucket width in seconds (the `resolution` column).
    pub fn seconds(self) -> i64 {
        match self {
            Resolution::OneMinute => 60,
            Resolution::FiveMinutes => 300,
            Resolution::OneHour => 3600,
            Resolution::OneDay => 86_400,
        }
    }

    /// Upstream's name: `1min`, `5min`, `1hour` or `1day`.
    pub fn name(self) -> &'static str {
        match self {
            Resolution::OneMinute => "1min",
            Resolution::FiveMinutes => "5min",
            Resolution::OneHour => "1hour",
            Resolution::OneDay => "1day",
        }
    }

    /// Upstream's default number of buckets retained.
    pub fn default_points(self) -> u32 {
        match self {
            Resolution::OneMinute => 60,
            Resolution::FiveMinutes => 288,
            Resolution::OneHour => 168,
            Resolution::OneDay => 90,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Resolution::OneMinute => 0,
            Resolution::FiveMinutes => 1,
            Resolution::OneHour => 2,
            Resolution::OneDay => 3,
        }
    }

    pub(crate) fn from_seconds(seconds: i64) -> Option<Resolution> {
        Resolution::ALL.into_iter().find(|r| r.seconds() == seconds)
    }
}
