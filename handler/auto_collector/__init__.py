"""Fund Auto-collection for Binance Portfolio Margin Pro, run unattended from AWS Lambda."""
