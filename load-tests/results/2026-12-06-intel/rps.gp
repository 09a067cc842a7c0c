set terminal pngcairo noenhanced size 1000,560 font ",11"
set output 'rps.png'
set title "requests per second"
set ylabel "requests per second (median, log scale)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top left
set grid ytics
set logscale y
set xtics nomirror
plot 'rps.dat' using 2:xtic(1) title columnheader(2), '' using 3 title columnheader(3), '' using 4 title columnheader(4), '' using 5 title columnheader(5)
