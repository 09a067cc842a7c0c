set terminal pngcairo noenhanced size 1000,560 font ",11"
set output 'cpu.png'
set title "target CPU µs per request"
set ylabel "target CPU µs per request (median, log scale)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top left
set grid ytics
set logscale y
set xtics nomirror
plot 'cpu.dat' using 2:xtic(1) title columnheader(2), '' using 3 title columnheader(3), '' using 4 title columnheader(4)
