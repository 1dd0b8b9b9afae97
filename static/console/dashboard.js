// The dashboard's chart: command state changes per hour, one stacked series per state entered.
document.addEventListener("DOMContentLoaded", function () {
  var canvas = document.getElementById("command-chart");
  var source = document.getElementById("command-chart-data");
  if (!canvas || !source || !window.Chart) return;
  var data = JSON.parse(source.textContent);
  var colours = {1: "#90a4ae", 2: "#4fc3f7", 3: "#7986cb", 4: "#ffb74d", 5: "#8d6e63",
                 6: "#2e7d32", 7: "#c62828", 8: "#ba68c8", 9: "#9e9e9e"};
  new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: data.datasets.map(function (set) {
        return {label: set.label, data: set.data, backgroundColor: colours[set.state] || "#607d8b"};
      })
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      scales: {x: {stacked: true}, y: {stacked: true, beginAtZero: true, ticks: {precision: 0}}},
      plugins: {legend: {position: "bottom"}}
    }
  });
  canvas.dataset.rendered = "true";
});
