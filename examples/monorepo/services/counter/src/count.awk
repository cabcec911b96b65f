# Counts the words of its input, most frequent first.
{ for (i = 1; i <= NF; i++) n[tolower($i)]++ }
END { for (w in n) printf "%d %s\n", n[w], w | "sort -rn"; }
