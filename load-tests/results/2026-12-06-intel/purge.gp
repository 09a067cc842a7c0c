set terminal pngcairo noenhanced size 900,520 font ",11"
set output 'purge.png'
set title "Tag purge: latency vs tagged entries (median, curl time_total)"
set xlabel "tagged entries N"
set ylabel "ms"
set logscale x
set yrange [0:*]
set grid
set key top left
plot 'purge-cachet.dat' using 1:2 with linespoints lw 2 title 'POST /purge, memory only', 'purge-cachet.dat' using 1:3 with linespoints lw 2 dt 2 title 'next request (miss), memory only', 'purge-cachet-l1.dat' using 1:2 with linespoints lw 2 title 'POST /purge, with Redis', 'purge-cachet-l1.dat' using 1:3 with linespoints lw 2 dt 2 title 'next request (miss), with Redis'
