"""Twitter/X producer: tweepy v2 recent search or filtered stream, replay, synthetic tweets."""
