// Package promtext appends the Prometheus text exposition format (version
// 0.0.4) to a caller's byte slice: family headers, samples with escaped label
// values, and histograms. It is the one writer of that format in Sluice;
// families are declared once as package variables and a scrape allocates
// nothing beyond the slice's growth.
package promtext
