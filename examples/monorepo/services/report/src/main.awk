# Sums the second column of its input, by the first.
{ sum[$1] += $2 }
END { for (k in sum) printf "%s %d\n", k, sum[k] }
