"""Reports rebuilt from files on disk alone: metrics, statistics, leaderboards, localisation, HTML."""
