package MySwitch(int x);
